"""Verdicts on the paper's claims, computed from numbers (never typed by hand).

A claim is tested by comparisons, one per setting (and, where a claim names several methods, per method):
each comparison is a list of per-seed differences d_s = (the claimed side's score) - (the other side's),
oriented so that larger favours the claim. A comparison *supports* the claim when the mean difference is
above `margin` and every seed's difference is above zero (the spread does not cross zero); a claim
*holds* when every comparison supports it, *holds partly* when some do, and *does not hold* when none do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from e2u.errors import E2UError

HOLDS, PARTLY, DOES_NOT_HOLD = "holds", "holds partly", "does not hold"


@dataclass(frozen=True)
class Comparison:
    name: str
    differences: tuple[float, ...]
    mean: float
    spread: float  # standard deviation over seeds (0 with one seed)
    supports: bool


def compare(name: str, differences: Sequence[float], margin: float) -> Comparison:
    """One comparison's per-seed differences, their mean and spread, and whether they support the claim."""
    values = tuple(float(d) for d in differences)
    if not values or not all(math.isfinite(v) for v in values):
        raise E2UError(f"claim comparison {name!r}: expected one finite difference per seed, got {list(differences)}")
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return Comparison(name, values, mean, spread, mean > margin and min(values) > 0)


def verdict(comparisons: Sequence[Comparison]) -> str:
    """holds / holds partly / does not hold, from how many comparisons support the claim."""
    if not comparisons:
        raise E2UError("a claim needs at least one comparison to be judged")
    supporting = sum(c.supports for c in comparisons)
    return HOLDS if supporting == len(comparisons) else PARTLY if supporting else DOES_NOT_HOLD


def judge(differences: Mapping[str, Sequence[float]], margin: float) -> tuple[str, list[Comparison]]:
    """The verdict and its comparisons, from {comparison name: per-seed differences}."""
    comparisons = [compare(name, values, margin) for name, values in differences.items()]
    return verdict(comparisons), comparisons
