"""The metrics of Editing as Unlearning (Li et al. 2025), which follows the PISTOL harness (`eval_util.py`).

Per item, on greedy generations: Rouge1 recall, the answer probability, MRR and Top-Hit ratio (from the
truth tokens' ranks, `token_ranks`); per study the combined score 1 - Rouge1(forget) + Rouge1(retain).
ROUGE-L recall and the length-normalised probability are in `metrics` (TOFU, closer-look).
"""

from __future__ import annotations

import math
from typing import Sequence

from rouge_score import rouge_scorer

TOP_HIT_RANK = 100  # PISTOL's `compute_MRR`: a hit is a rank <= 100


def rouge1_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Rouge1 recall of each prediction against its reference (rouge-score, Porter stemmer on), as PISTOL's
    `eval_rouge_recall`: `score(reference, prediction)["rouge1"].recall`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    return [scorer.score(ref, pred)["rouge1"].recall for pred, ref in zip(predictions, references)]


def answer_probability(mean_token_nll: float, n_tokens: int) -> float:
    """P(a|q) = prod_t p(a_t | q, a_<t) = exp(-sum token NLL) under teacher forcing, the whole answer's probability.

    The answer tokens are those the NLLs are taken over (`prompts.encode_answer`: the answer, then EOS), so
    the sum is `mean_token_nll * n_tokens`. This is the reviews' reading of the paper ("the product of the
    answer tokens' probabilities"). PISTOL's code logs something else as `probs`: the mean over the first
    |answer| positions of the *prompt* of the largest softmax probability, which involves neither the answer
    nor its tokens' probabilities (a bug), so it is not reproduced. `metrics.normalised_probability` is
    the length-normalised form exp(-mean token NLL).
    """
    return math.exp(-mean_token_nll * n_tokens)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """Mean over the truth's tokens of 1/rank (PISTOL's per-item MRR). A token at a step the generation
    never reached (rank None) contributes 0; a truth without tokens gives 0."""
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks) if ranks else 0.0


def top_hit_ratio(ranks: Sequence[int | None], top: int = TOP_HIT_RANK) -> float:
    """Share of the truth's tokens ranked <= `top` at their step (PISTOL's `hit_rate`). A step the generation
    never reached (rank None) is no hit; a truth without tokens gives 0."""
    return sum(r is not None and r <= top for r in ranks) / len(ranks) if ranks else 0.0


def combined_score(forget_rouge1: float, retain_rouge1: float) -> float:
    """The paper's combined score: 1 - Rouge1 recall(forget) + Rouge1 recall(retain), in [0, 2], higher better."""
    return 1.0 - forget_rouge1 + retain_rouge1


def retain_split(summary) -> str | None:
    """The split the combined score takes as retained: "retain", else "neighbour", else None."""
    return next((s for s in ("retain", "neighbour") if s in summary), None)
