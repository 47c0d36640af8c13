"""How each claim's verdict fares under the reasonable alternatives to the chosen reading (`readings.ALTERNATIVES`):
one alternative at a time, the same results, the same bootstrap. A verdict that changes under an alternative is
marked, so a reader sees which verdicts rest on a choice and which do not.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from e2u.book.bootstrap import N_RESAMPLES
from e2u.book.claim_tests import ClaimVerdict, judge_claims
from e2u.book.readings import ALTERNATIVES, CHOSEN, Reading
from e2u.errors import E2UError

CHANGED = " (changed)"  # the mark of a verdict that differs from the chosen reading's


def verdicts_by_reading(results: Sequence[dict], settings: Sequence[str],
                        readings: Sequence[Reading] = (CHOSEN, *ALTERNATIVES),
                        n_resamples: int = N_RESAMPLES) -> dict[str, list[ClaimVerdict]]:
    """{reading label: every claim's verdict under it}."""
    labels = [r.label for r in readings]
    if len(set(labels)) != len(labels):
        raise E2UError(f"robustness: readings must have distinct labels, got {labels}")
    return {r.label: judge_claims(results, settings, r, n_resamples) for r in readings}


def robustness_table(by_reading: dict[str, list[ClaimVerdict]], chosen: str = CHOSEN.label) -> pd.DataFrame:
    """Rows: claims; columns: readings (the chosen one first); cells: the verdict, marked `CHANGED` where it
    differs from the chosen reading's."""
    if chosen not in by_reading:
        raise E2UError(f"robustness_table: no verdicts for the chosen reading {chosen!r}; got {list(by_reading)}")
    base = {v.claim.number: v.verdict for v in by_reading[chosen]}
    rows = {}
    for label, verdicts in by_reading.items():
        for v in verdicts:
            mark = CHANGED if label != chosen and v.verdict != base[v.claim.number] else ""
            rows.setdefault(v.claim.number, {})[label] = v.verdict + mark
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "claim"
    return table[[chosen, *[label for label in by_reading if label != chosen]]]


def changed(table: pd.DataFrame) -> dict[int, list[str]]:
    """{claim: the readings under which its verdict changes}."""
    return {claim: [label for label, cell in row.items() if cell.endswith(CHANGED)] for claim, row in table.iterrows()}
