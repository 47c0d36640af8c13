"""The paper's four claims, each tested by comparisons computed from result files; `claims.judge` gives
the verdict. Ours: the paper states the claims in words; which numbers test each one, and the margin a
difference must clear, are our reading, stated in `CLAIMS` and printed in the book.

A cell enters a comparison by its method (`params.method`), setting and seed; cells run with query merging
(`params.merge_group` > 0) enter only claim 4, cells with self-written targets (`params.refusal` "self") only
claim 2's second comparison, cells run in chunks (`params.chunks` > 1) none (the sequence figure shows them). Where a method ran twice in a setting and seed (two labels), the comparison takes the
mean. Differences are per seed, over the seeds both sides have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from e2u.book.claims import Comparison, compare, verdict
from e2u.evaluation.paper_metrics import retain_split
from e2u.evaluation.rephrase_robustness import robustness

PAPER_BASELINES = ("gradient_ascent", "gradient_difference", "kl", "dpo")
EDITORS = ("rome", "memit", "alphaedit", "grace", "wise")


def combined(result: dict) -> float | None:
    """1 - Rouge1(forget) + Rouge1(retain) after unlearning."""
    return ((result["aggregates"]["after"].get("combined_score") or {}).get("value"))


def retain_rouge1(result: dict) -> float | None:
    split = retain_split(result["summary"]["after"])
    return result["summary"]["after"][split]["rouge1_recall"] if split else None


def rephrase_held(result: dict) -> float | None:
    """The share of the forget Rouge1 drop that the paraphrased questions show too (`rephrase_robustness`)."""
    entry = robustness(result["summary"]["before"], result["summary"]["after"]).get("rouge1_recall") or {}
    return entry.get("held")


def aligned_rate(result: dict) -> float | None:
    """The share of forget answers passing all four human-aligned checks (`human_aligned`)."""
    return ((result.get("human_aligned") or {}).get("rates") or {}).get("aligned")


@dataclass(frozen=True)
class Claim:
    number: int
    statement: str  # the paper's claim, in our words
    test: str  # the comparisons that test it
    margin: float  # a comparison supports the claim when its mean difference is above this (claims.compare)


CLAIMS = (
    Claim(1, "WISE and AlphaEdit are strong unlearning baselines, especially on pretrained knowledge.",
          "per setting, for WISE and for AlphaEdit: its combined score minus the best of GA, GD, KL and DPO; and "
          "that gap on pretrained knowledge minus the gap on finetuned knowledge", 0.05),
    Claim(2, "Editing gives human-aligned refusals.",
          "per setting: the human-aligned rate on forget questions, the editors' mean (ROME, MEMIT, AlphaEdit, "
          "GRACE, WISE) minus the paper's baselines' mean (GA, GD, KL, DPO); once with the template targets, once "
          "with the targets the model wrote (self-improvement, where the study runs it)", 0.1),
    Claim(3, "AlphaEdit and WISE hold up under rephrasing, while GA, KL, ROME and MEMIT can break the model.",
          "per setting: the share of forgetting the rephrased questions keep (AlphaEdit and WISE's mean minus GA, "
          "KL, ROME and MEMIT's mean), and retain Rouge1 after unlearning (the same two groups)", 0.05),
    Claim(4, "Query merging rescues ROME and MEMIT on long forget sequences.",
          "per setting, for ROME and for MEMIT: the combined score with merged queries minus one edit per query",
          0.05),
)


def paired_settings(settings: Sequence[str]) -> list[tuple[str, str]]:
    """(pretrained…, finetuned…) setting names that differ only in that word: "pretrained" and "finetuned",
    "pretrained-llama2" and "finetuned-llama2"."""
    return [(name, "finetuned" + name[len("pretrained"):]) for name in settings
            if name.startswith("pretrained") and "finetuned" + name[len("pretrained"):] in settings]


def _values(results: Sequence[dict], setting: str, methods: Sequence[str], score: Callable[[dict], float | None],
            merged: bool = False, self_written: bool = False) -> dict[int, float]:
    """{seed: mean of `score` over the cells of `methods` in `setting` (the group's mean, per seed)}: cells with
    merged queries when `merged`, with self-written refusal targets when `self_written`, else plain ones."""
    per_seed: dict[int, list[float]] = {}
    for result in results:
        params = result["params"]
        if (params["setting"] != setting or params["method"] not in methods
                or (params.get("merge_group", 0) > 0) != merged or params.get("chunks", 1) > 1
                or (params.get("refusal") == "self") != self_written):
            continue
        value = score(result)
        if value is not None:
            per_seed.setdefault(params["seed"], []).append(value)
    return {seed: sum(v) / len(v) for seed, v in per_seed.items()}


def _best(results, setting, methods, score) -> dict[int, float]:
    """{seed: the best of `methods`' scores} (each method's own per-seed mean first)."""
    per_method = [_values(results, setting, [m], score) for m in methods]
    seeds = set().union(*per_method) if per_method else set()
    return {s: max(v[s] for v in per_method if s in v) for s in seeds}


def _minus(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def claim_differences(claim: Claim, results: Sequence[dict], settings: Sequence[str]) -> dict[str, list[float]]:
    """{comparison name: per-seed differences}; a comparison without data on both sides is left out."""
    out: dict[str, list[float]] = {}
    if claim.number == 1:
        gaps = {}
        for setting in settings:
            best = _best(results, setting, PAPER_BASELINES, combined)
            for method in ("wise", "alphaedit"):
                mine = _values(results, setting, [method], combined)
                gaps[setting, method] = {s: mine[s] - best[s] for s in set(mine) & set(best)}
                out[f"{setting}: {method} - best paper baseline (combined)"] = _minus(mine, best)
        for pretrained, finetuned in paired_settings(settings):
            for method in ("wise", "alphaedit"):
                out[f"{method}: gap {pretrained} - gap {finetuned}"] = _minus(gaps[pretrained, method],
                                                                               gaps[finetuned, method])
    elif claim.number == 2:
        for setting in settings:
            baselines = _values(results, setting, PAPER_BASELINES, aligned_rate)
            out[f"{setting}: editors - paper baselines (human-aligned rate)"] = _minus(
                _values(results, setting, EDITORS, aligned_rate), baselines)
            out[f"{setting}: editors with self-written targets - paper baselines (human-aligned rate)"] = _minus(
                _values(results, setting, EDITORS, aligned_rate, self_written=True), baselines)
    elif claim.number == 3:
        robust, fragile = ("alphaedit", "wise"), ("gradient_ascent", "kl", "rome", "memit")
        for setting in settings:
            out[f"{setting}: forgetting kept under rephrasing"] = _minus(
                _values(results, setting, robust, rephrase_held), _values(results, setting, fragile, rephrase_held))
            out[f"{setting}: retain Rouge1 after unlearning"] = _minus(
                _values(results, setting, robust, retain_rouge1), _values(results, setting, fragile, retain_rouge1))
    elif claim.number == 4:
        for setting in settings:
            for method in ("rome", "memit"):
                out[f"{setting}: {method} merged - one per query (combined)"] = _minus(
                    _values(results, setting, [method], combined, merged=True),
                    _values(results, setting, [method], combined))
    return {name: d for name, d in out.items() if d}


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: str  # claims.HOLDS / PARTLY / DOES_NOT_HOLD, or "not measured"
    comparisons: tuple[Comparison, ...]


def judge_claims(results: Sequence[dict], settings: Sequence[str]) -> list[ClaimVerdict]:
    """Every claim's verdict from the results; a claim with no comparison measured is "not measured"."""
    verdicts = []
    for claim in CLAIMS:
        comparisons = tuple(compare(name, d, claim.margin) for name, d in claim_differences(claim, results, settings).items())
        verdicts.append(ClaimVerdict(claim, verdict(comparisons) if comparisons else "not measured", comparisons))
    return verdicts
