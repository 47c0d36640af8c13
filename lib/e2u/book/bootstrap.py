"""A paired, hierarchical bootstrap interval for the difference between two sides of a comparison.

The data of a comparison, per seed, are *blocks*: a set of questions (the forget questions of a setting, its kept
questions, ...) that both sides were asked, with each side's per-item values in the same question order. Every
measure of the claims is a sum of means of per-item values (the combined score is mean(1 - Rouge1) over the forget
questions plus mean(Rouge1) over the kept ones), so a side's statistic for a seed is the sum over blocks of its
mean, and the seed's difference is claimed - other. The point estimate is the mean of that difference over seeds.

One bootstrap replicate:

1. draw as many seeds as there are, with replacement;
2. for each drawn seed and each of its blocks, draw that many question indices with replacement (blocks are
   different questions, so each is drawn on its own) and give *the same indices to both sides* (paired: they
   were asked the same questions); recompute each side's statistic from its resampled values, then the difference;
3. average the drawn seeds' differences.

The interval is the (1 - level) / 2 and (1 + level) / 2 quantiles of `N_RESAMPLES` replicates (percentile method).
With one seed the first level is a constant, and the interval is `scipy.stats.bootstrap`'s percentile interval
over the questions (same indices for both sides: each block's data are its question indices).

What it does not cover: the seed level is only as good as the seeds. Three seeds allow ten different draws, and
a percentile bootstrap over S seeds reads the spread between seeds as sqrt((S - 1) / S) of what it is, so where
the differences vary between seeds more than their questions explain, the interval is too narrow; and the
questions are a sample of a small pool, from one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from e2u.errors import E2UError

N_RESAMPLES = 2000  # replicates per interval: the claims chapter computes a few hundred intervals in seconds
LEVEL = 0.95


@dataclass(frozen=True)
class Block:
    """Both sides' per-item values on one set of questions, in the same question order."""

    name: str  # e.g. "pretrained forget"
    claimed: np.ndarray
    other: np.ndarray

    def __post_init__(self):
        claimed, other = (np.asarray(v, dtype=float) for v in (self.claimed, self.other))
        if claimed.ndim != 1 or claimed.shape != other.shape or not len(claimed):
            raise E2UError(f"bootstrap block {self.name!r}: expected one value per question on each side, got "
                           f"{claimed.shape} and {other.shape}")
        if not (np.isfinite(claimed).all() and np.isfinite(other).all()):
            raise E2UError(f"bootstrap block {self.name!r}: a per-item value is not finite")
        object.__setattr__(self, "claimed", claimed)
        object.__setattr__(self, "other", other)

    def __len__(self) -> int:
        return len(self.claimed)


@dataclass(frozen=True)
class Interval:
    """A comparison's point estimate, its interval at `level`, and what it was computed from."""

    point: float  # mean over seeds of the seed's difference
    low: float
    high: float
    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]  # each seed's difference, in the order of `seeds`
    questions: tuple[int, ...]  # the questions per seed (all blocks), in the order of `seeds`
    level: float = LEVEL
    n_resamples: int = N_RESAMPLES

    @property
    def resampled(self) -> str:
        """What the bootstrap drew: "seeds and questions", or the questions of the one seed."""
        return "seeds and questions" if len(self.seeds) > 1 else f"questions of seed {self.seeds[0]} only"


def seed_difference(blocks: Sequence[Block]) -> float:
    """One seed's difference: the sum over blocks of mean(claimed) - mean(other)."""
    return float(sum(b.claimed.mean() - b.other.mean() for b in blocks))


def paired_interval(per_seed: Mapping[int, Sequence[Block]], rng: np.random.Generator,
                    n_resamples: int = N_RESAMPLES, level: float = LEVEL) -> Interval:
    """The comparison's point estimate and its `level` interval from the paired, hierarchical bootstrap (module
    docstring): over seeds and, within each, over each block's questions; with one seed, over its questions only."""
    if not per_seed or any(not blocks for blocks in per_seed.values()):
        raise E2UError(f"bootstrap: expected at least one seed with at least one block, got {dict(per_seed)}")
    if not 0 < level < 1 or n_resamples < 1:
        raise E2UError(f"bootstrap: level must be in (0, 1) and n_resamples at least 1, got {level}, {n_resamples}")
    seeds = tuple(sorted(per_seed))
    blocks = [list(per_seed[s]) for s in seeds]
    if len(seeds) == 1:
        low, high = _questions_only(blocks[0], rng, n_resamples, level)
    else:
        low, high = np.quantile(_hierarchical(blocks, rng, n_resamples), [(1 - level) / 2, (1 + level) / 2])
    differences = tuple(seed_difference(b) for b in blocks)
    return Interval(math.fsum(differences) / len(differences), float(low), float(high), seeds, differences,
                    tuple(sum(len(b) for b in bs) for bs in blocks), level, n_resamples)


def _resampled(blocks: Sequence[Block], rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` replicates of one seed's difference, each block's questions drawn with replacement, the same
    indices for both sides."""
    out = np.zeros(size)
    for block in blocks:
        picked = rng.integers(0, len(block), size=(size, len(block)))
        out += block.claimed[picked].mean(axis=-1) - block.other[picked].mean(axis=-1)
    return out


def _hierarchical(blocks: Sequence[Sequence[Block]], rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """Replicates of the mean over seeds: seeds drawn with replacement, then each drawn seed's questions."""
    n_seeds = len(blocks)
    drawn = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))  # replicate r's j-th seed
    total = np.zeros(n_resamples)
    for j in range(n_seeds):
        for seed, seed_blocks in enumerate(blocks):
            rows = np.flatnonzero(drawn[:, j] == seed)
            total[rows] += _resampled(seed_blocks, rng, len(rows))
    return total / n_seeds


def _questions_only(blocks: Sequence[Block], rng: np.random.Generator, n_resamples: int,
                    level: float) -> tuple[float, float]:
    """The percentile interval of one seed's difference by `scipy.stats.bootstrap`, the data being each block's
    question indices (resampled block by block; both sides read the same resampled indices). A block of one
    question resamples to itself: it shifts the interval and is not handed to scipy (which needs two)."""
    varying = [b for b in blocks if len(b) > 1]
    fixed = seed_difference([b for b in blocks if len(b) == 1]) if len(varying) < len(blocks) else 0.0
    if not varying:
        return fixed, fixed

    def statistic(*picked, axis=-1):
        return sum(b.claimed[i].mean(axis=axis) - b.other[i].mean(axis=axis) for b, i in zip(varying, picked))

    # random_state, not rng: the keyword the lock's scipy 1.17 and the floor's 1.10 both take
    result = stats.bootstrap([np.arange(len(b)) for b in varying], statistic, n_resamples=n_resamples,
                             vectorized=True, paired=False, confidence_level=level, method="percentile",
                             random_state=rng)
    return fixed + float(result.confidence_interval.low), fixed + float(result.confidence_interval.high)
