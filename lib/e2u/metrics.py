"""Per-item statistics (reference/metrics.md): ROUGE-L recall, length-normalised probability, refusals.

Aggregates are computed from stored per-item values, never the other way round.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

_REFUSAL_PATTERNS = [
    r"\bI (?:do not|don't|dont) (?:know|have (?:any |enough |specific |reliable )?(?:information|knowledge|details|data))",
    r"\bI(?:'m| am) (?:not (?:sure|aware|able|certain|familiar)|unable|afraid|sorry)",
    r"\bI (?:cannot|can't|can not|could not|couldn't) (?:answer|provide|help|share|find|say|tell|recall|confirm)",
    r"\b(?:no|not any) (?:information|knowledge|record|details|data) (?:about|on|regarding|of)\b",
    r"\b(?:unknown|not known) to me\b",
    r"\bI have no (?:idea|information|knowledge|record|details)",
    r"\bbeyond my knowledge\b",
    r"\bnot something I (?:know|can answer)\b",
    r"^\s*(?:sorry|apologies)\b",
]


def is_refusal(text: str) -> bool:
    """True when a generated answer declines to answer ("I don't know", "I'm not sure", ...).

    A keyword detector, as in the closer-look and TOFU code bases: it checks the answer's wording,
    not its truth. An empty answer counts as a refusal (the model said nothing).
    """
    if not text.strip():
        return True
    return any(re.search(pattern, text, flags=re.IGNORECASE) for pattern in _REFUSAL_PATTERNS)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall of each prediction against its reference (rouge-score, Porter stemmer on)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]


def normalised_probability(mean_token_nll: float) -> float:
    """P(a|q)^(1/|a|) = exp(-mean token NLL): TOFU's length-normalised answer probability."""
    return math.exp(-mean_token_nll)


def mean(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")
