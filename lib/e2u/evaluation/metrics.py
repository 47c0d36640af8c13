"""Per-item statistics and their aggregates (reference/metrics.md: TOFU in section C, closer-look in 1(c)).

Per item: ROUGE-L recall, length-normalised probability (plain, or against perturbed options), truth ratio,
token entropy, refusals. Aggregates (truth-ratio scores, forget quality, model utility, forget efficacy) are
computed from stored per-item values, never the other way round. Cosine similarity is in `similarity`,
entailment in `entailment`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence, Union

from rouge_score import rouge_scorer
from scipy.stats import ks_2samp

from e2u.errors import E2UError

_REFUSAL_PATTERNS = (
    r"\bI (?:do not|don't|dont) (?:know|have (?:any |enough |specific |reliable )?(?:information|knowledge|details|data)"
    r"|have (?:the ability|access)\b)",
    r"\bI(?:'m| am) (?:not (?:sure|aware|able|certain|familiar|equipped)|unable|afraid|sorry(?! for\b))",
    r"\bI (?:cannot|can't|can not|could not|couldn't) (?:answer|provide|help|share|find|say|tell|recall|confirm)",
    r"\b(?:no|not any) (?:information|knowledge|record|details|data) (?:about|on|regarding|of)\b",
    r"\b(?:unknown|not known) to me\b",
    r"\bI have no (?:idea|information|knowledge|record|details)",
    r"\bbeyond my knowledge\b",
    r"\bnot something I (?:know|can answer)\b",
    r"^\s*(?:sorry|apologies)\b(?! for\b)",
)


def is_refusal(text: str) -> bool:
    """True when a generated answer declines to answer ("I don't know", "I'm not sure", ...).

    A keyword detector, as in the closer-look and TOFU code bases: it checks the answer's wording,
    not its truth. An empty answer counts as a refusal (the model said nothing). "Sorry for ..." is an apology
    or a condolence, not a refusal ("I'm sorry for your loss."; a refusal after it is found by its own words);
    "I'm not equipped to ..." and "I don't have the ability / access ..." decline (checked against answers
    labelled by reading: `labels`).
    """
    if not text.strip():
        return True
    return any(re.search(pattern, text, flags=re.IGNORECASE) for pattern in _REFUSAL_PATTERNS)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall of each prediction against its reference (rouge-score, Porter stemmer on)."""
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


# ---------------------------------------------------------------------------------------------------------------
# Results that may be missing, and the aggregates' return type.


class ModelUnavailable(E2UError):
    """A scorer's model could not be loaded. The message starts with "not computed:" and says what to install."""


@dataclass(frozen=True)
class Score:
    """A split-level metric and its per-item values; `value is None` means not computed, and `reason` says why.

    The cosine and entailment scorers return this, so a missing model is reported, never replaced by a number.
    """
    value: float | None
    per_item: list | None = None
    reason: str | None = None

    @property
    def computed(self) -> bool:
        return self.value is not None

    @classmethod
    def not_computed(cls, reason: str) -> "Score":
        return cls(None, None, reason if reason.startswith("not computed") else f"not computed: {reason}")


@dataclass(frozen=True)
class Aggregate:
    """An aggregate and what went into it: `used` names the inputs, `skipped` maps the others to the reason."""
    value: float
    used: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


MaybeValue = Union[float, None, Score]


def _split_computed(values: Mapping[str, MaybeValue]) -> tuple[dict[str, float], dict[str, str]]:
    """Separate computed values from those marked not computed (None, or a `Score` without a value)."""
    used: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, v in values.items():
        if isinstance(v, Score):
            if v.value is None:
                skipped[name] = v.reason or "not computed"
                continue
            v = v.value
        if v is None:
            skipped[name] = "not computed"
            continue
        if math.isnan(float(v)):
            raise E2UError(f"{name} is NaN (an empty split or a failed computation); mark it None if it was not computed")
        used[name] = float(v)
    return used, skipped


# ---------------------------------------------------------------------------------------------------------------
# Truth ratio (reference/metrics.md: "Truth ratio per item" in C, "Truth Ratio" in 1(c)).


def truth_ratio(paraphrased_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """R = exp(mean_k NLL(perturbed_k) - NLL(paraphrased)), NLLs being mean token NLLs (closer-look orientation).

    R = P(paraphrased) / P_pert with P_pert the geometric mean of the perturbed answers' probabilities, so
    R > 1 means the model prefers the correct answer. TOFU's own TR is 1/R; every aggregate below is written
    for R. For Real Authors and World Facts the "paraphrased" answer is the original short answer. An R too
    large for a float is `inf` (its aggregates are still defined).
    """
    if not perturbed_nlls:
        raise E2UError("truth ratio needs at least one perturbed answer")
    try:
        return math.exp(sum(perturbed_nlls) / len(perturbed_nlls) - paraphrased_nll)
    except OverflowError:
        return math.inf


def _closer_to_one(r: float) -> float:
    """min(R, 1/R), with R = 0 giving 0 (an underflowed ratio)."""
    return 0.0 if r == 0 else min(r, 1.0 / r)


def tofu_forget_truth_ratio(ratios: Iterable[float]) -> float:
    """TOFU forget-set score `closer_to_1_better`: mean(min(R, 1/R)). 1 = cannot tell true from false (forgotten)."""
    return mean(_closer_to_one(r) for r in ratios)


def closer_look_forget_truth_ratio(ratios: Iterable[float]) -> float:
    """Closer-look forget-set score: 1 - mean(min(R, 1/R)). 0 = forgotten; high = still tells them apart."""
    return 1.0 - tofu_forget_truth_ratio(ratios)


def retain_truth_ratio(ratios: Iterable[float]) -> float:
    """Retain, neighbour, Real Authors, World Facts score: mean(max(0, 1 - 1/R)), high = prefers the true answer.

    TOFU's `true_better` (mean(max(0, 1 - TR)) with TR = 1/R) and closer-look's non-forget truth ratio.
    """
    return mean(0.0 if r == 0 else max(0.0, 1.0 - 1.0 / r) for r in ratios)


# ---------------------------------------------------------------------------------------------------------------
# Per-item statistics.


def probability_with_options(true_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """p / (p + sum_j p_j) with p = exp(-mean token NLL): TOFU's `probability_w_options` for RA and WF.

    Computed as exp(-NLL_true - logsumexp(-NLL_true, -NLL_j...)), which cannot overflow.
    """
    logs = [-true_nll] + [-n for n in perturbed_nlls]
    top = max(logs)
    log_total = top + math.log(sum(math.exp(x - top) for x in logs))
    return math.exp(-true_nll - log_total)


def token_entropy(token_ids: Sequence[int]) -> float:
    """Closer-look token entropy of one generation: H2(unigram distribution of its tokens) / log2(#tokens).

    1 when every token differs, 0 when one token repeats (or when there is at most one token).
    Pass the generation's ids from the model's tokenizer, without special tokens.
    """
    n = len(token_ids)
    if n <= 1:
        return 0.0
    entropy = -sum((c / n) * math.log2(c / n) for c in Counter(token_ids).values())
    return entropy / math.log2(n)


# ---------------------------------------------------------------------------------------------------------------
# Aggregates (reference/metrics.md "Aggregates" in C and in 1(c)).


def forget_quality(model_truth_ratios: Sequence[float], retain_model_truth_ratios: Sequence[float]) -> float:
    """TOFU Forget Quality: p-value of the two-sample KS test (`scipy.stats.ks_2samp`) between the forget-set
    truth ratios of the evaluated model and of the retain model. 1 for identical samples; p > 0.05 means
    indistinguishable from the retain model. Invariant to the R versus 1/R orientation (used on both sides).
    """
    if not model_truth_ratios or not retain_model_truth_ratios:
        raise E2UError("forget quality needs truth ratios from both the evaluated model and the retain model")
    return float(ks_2samp(list(model_truth_ratios), list(retain_model_truth_ratios)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """n / sum(1/v) over non-negative values; any zero gives 0 (as `scipy.stats.hmean`)."""
    values = [float(v) for v in values]
    if not values:
        raise E2UError("harmonic mean of no values")
    if any(math.isnan(v) or v < 0 for v in values):
        raise E2UError(f"harmonic mean needs non-negative numbers, got {values}")
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def model_utility(values: Mapping[str, MaybeValue], require_all: bool = False) -> Aggregate:
    """Model Utility: the harmonic mean of the named values (any zero gives 0).

    Rule for missing values: a value marked not computed (None, or a `Score` without a value) is left out
    and listed in `skipped`, or is an error when `require_all`; a NaN is always an error naming the value.
    """
    used, skipped = _split_computed(values)
    if require_all and skipped:
        raise E2UError(f"model utility needs every value, but these were not computed: {sorted(skipped)}")
    if not used:
        raise E2UError(f"model utility has no computed value among {sorted(values)}")
    return Aggregate(harmonic_mean(list(used.values())), tuple(used), skipped)


TOFU_UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
TOFU_UTILITY_METRICS = ("probability", "rouge_l_recall", "truth_ratio")


def model_utility_tofu(summary: Mapping[str, Mapping[str, MaybeValue]]) -> Aggregate:
    """TOFU Model Utility: harmonic mean of nine numbers, {probability, ROUGE-L recall, truth ratio} on
    retain, real_authors and world_facts (`summary[split][metric]`). All nine are required.

    The caller supplies TOFU's forms: plain probability on retain, `probability_with_options` on RA and
    WF, and `retain_truth_ratio` everywhere.
    """
    values = _utility_inputs(summary, TOFU_UTILITY_SPLITS, TOFU_UTILITY_METRICS, "TOFU model utility")
    return model_utility(values, require_all=True)


def _utility_inputs(summary, splits, metric_names, what: str) -> dict[str, MaybeValue]:
    """`{"split/metric": value}` for every split and metric; a missing split is an error naming it."""
    missing = [split for split in splits if split not in summary]
    if missing:
        raise E2UError(f"{what} needs split(s) {missing}; have {sorted(summary)}")
    return {f"{split}/{metric}": summary[split].get(metric) for split in splits for metric in metric_names}


CLOSER_LOOK_UTILITY_SPLITS = ("retain", "neighbour", "real_authors", "world_facts")
CLOSER_LOOK_UTILITY_METRICS = (
    "rouge_l_recall", "probability", "truth_ratio", "token_entropy", "cosine_similarity", "entailment",
)


def model_utility_closer_look(
    summary: Mapping[str, Mapping[str, MaybeValue]], splits: Sequence[str] | None = None
) -> Aggregate:
    """Closer-look Model Utility: harmonic mean of all non-forget metrics (6 metrics x 3 sets on TOFU, 6 on the
    real-world neighbour set). `splits` defaults to those of retain, neighbour, real_authors, world_facts
    present in `summary`; `splits=["retain"]` gives closer-look's "Model Utility Retain".

    Metrics not computed (e.g. entailment without an NLI model) are left out and listed in `skipped`, so a
    value without them is a different number from the paper's and says so.
    """
    splits = [s for s in CLOSER_LOOK_UTILITY_SPLITS if s in summary] if splits is None else list(splits)
    if not splits:
        raise E2UError(f"closer-look model utility needs one of {CLOSER_LOOK_UTILITY_SPLITS}; have {sorted(summary)}")
    return model_utility(_utility_inputs(summary, splits, CLOSER_LOOK_UTILITY_METRICS, "closer-look model utility"))


def forget_efficacy(
    rouge_l_recall: MaybeValue, probability: MaybeValue, truth_ratio: MaybeValue,
    cosine_similarity: MaybeValue = None, entailment: MaybeValue = None,
) -> Aggregate:
    """Closer-look Forget Efficacy: 1 - mean(forget ROUGE-L recall, probability, truth ratio, cosine, entailment).

    `truth_ratio` is `closer_look_forget_truth_ratio` (high = still known), like the other four. Metrics not
    computed (None, or a `Score` without a value) are left out of the mean; `used` and `skipped` say which.
    Token entropy is not part of it.
    """
    used, skipped = _split_computed({
        "rouge_l_recall": rouge_l_recall, "probability": probability, "truth_ratio": truth_ratio,
        "cosine_similarity": cosine_similarity, "entailment": entailment,
    })
    if not used:
        raise E2UError("forget efficacy has no computed forget metric")
    return Aggregate(1.0 - sum(used.values()) / len(used), tuple(used), skipped)
