"""Verdicts on the paper's claims, from intervals computed from numbers (never typed by hand).

A claim is tested by comparisons, one per setting (and, where a claim names several methods, per method). Each
comparison is a difference (the claimed side's score minus the other's), oriented so that larger favours the
claim, with its 95% interval from the paired, hierarchical bootstrap (`bootstrap.paired_interval`). The rule:

* a comparison **supports** the claim when its interval's lower bound is above the claim's margin, it
  **contradicts** the claim when its upper bound is below zero, and it **straddles** otherwise;
* a claim **holds** when every comparison supports it, **does not hold** when every comparison contradicts it,
  **holds partly** when they split (at least one supports, not all do), and is **inconclusive** otherwise (none
  supports, not all contradict);
* a comparison without data is **not measured** (with the reason) and takes no part; a claim none of whose
  comparisons is measured is **not measured**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from e2u.book.bootstrap import Interval
from e2u.errors import E2UError

SUPPORTS, CONTRADICTS, STRADDLES = "supports", "contradicts", "straddles"
HOLDS, PARTLY, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "holds partly", "does not hold", "inconclusive"
NOT_MEASURED = "not measured"
VERDICTS = (HOLDS, PARTLY, INCONCLUSIVE, DOES_NOT_HOLD, NOT_MEASURED)
# A comparison's state as the tables show it: a mark a reader reads at a glance, then the word (`STATE_LEGEND`).
STATE_SHOWN = {SUPPORTS: "✓ supports", CONTRADICTS: "✗ contradicts", STRADDLES: "straddles",
               NOT_MEASURED: "not measured"}
STATE_LEGEND = ("✓ supports: the interval's lower bound is above the claim's margin. ✗ contradicts: its upper "
                "bound is below zero. Straddles: neither. Not measured: no cells measure it; the note says why.")


def shown_state(state: str) -> str:
    """A comparison's state as a table shows it (`STATE_SHOWN`; an unknown state as it is)."""
    return STATE_SHOWN.get(state, state)


def state(interval: Interval, margin: float) -> str:
    """supports (lower bound > margin), contradicts (upper bound < 0), or straddles."""
    if interval.low > margin:
        return SUPPORTS
    return CONTRADICTS if interval.high < 0 else STRADDLES


@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim: its interval (None: not measured, the note says why) and the claim's margin."""

    name: str
    interval: Interval | None  # None: not measured
    margin: float
    note: str = ""  # what the reader needs beside the numbers: the baseline taken as best, targets that fell back

    @property
    def state(self) -> str:
        return NOT_MEASURED if self.interval is None else state(self.interval, self.margin)


def verdict(comparisons: Sequence[Comparison]) -> str:
    """holds / does not hold / holds partly / inconclusive from the measured comparisons' states (module
    docstring); not measured when none is measured."""
    states = [c.state for c in comparisons if c.state != NOT_MEASURED]
    if not states:
        return NOT_MEASURED
    supporting, contradicting = states.count(SUPPORTS), states.count(CONTRADICTS)
    if supporting == len(states):
        return HOLDS
    if contradicting == len(states):
        return DOES_NOT_HOLD
    return PARTLY if supporting else INCONCLUSIVE


def check_margin(margin: float, where: str) -> float:
    """A margin is a finite number at least zero."""
    if not isinstance(margin, (int, float)) or not 0 <= margin < float("inf"):
        raise E2UError(f"{where}: margin must be a number at least 0, got {margin!r}")
    return float(margin)
