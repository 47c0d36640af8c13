"""Study-level numbers from a split summary (reference/metrics.md "Aggregates"), each with its inputs named.

* model utility, closer-look form: harmonic mean of every computed non-forget metric;
* model utility, TOFU form: the nine numbers over retain, real authors and world facts (only when all
  three splits with perturbed answers are present, i.e. the finetuned setting);
* forget efficacy: 1 - mean of the computed forget metrics;
* forget quality: the KS-test p-value of the forget truth ratios against the retain model's (needs the
  per-item results of both models, so only where a setting has a retain model).
* combined score (Editing as Unlearning): 1 - Rouge1(forget) + Rouge1(retain, else neighbour), and its
  rephrase-attack form on `forget_paraphrased`.
Metrics that were not computed are listed, so a number without them is never mistaken for the paper's.
"""

from __future__ import annotations

from e2u.errors import E2UError
from e2u.evaluation import metrics, paper_metrics


def _tofu_view(summary: dict) -> dict:
    """TOFU's forms: plain probability on retain, options-normalised on real authors and world facts."""
    view = {}
    for split in metrics.TOFU_UTILITY_SPLITS:
        if split in summary:
            entry = dict(summary[split])
            if split != "retain":
                entry["probability"] = entry.get("probability_options")
            view[split] = entry
    return view


def forget_truth_ratios(results: dict | None) -> list[float]:
    return [item["truth_ratio"] for item in (results or {}).get("forget", []) if "truth_ratio" in item]


def aggregates(summary: dict, results: dict | None = None, retain_results: dict | None = None) -> dict:
    """{name: {"value", "used", "skipped"}} for every aggregate the summary supports; others are absent.

    `results` / `retain_results`: per-item results of the evaluated model and of the retain model, for
    forget quality."""
    out = {}
    utility_splits = [s for s in metrics.CLOSER_LOOK_UTILITY_SPLITS if s in summary]
    if utility_splits:
        try:
            out["model_utility"] = _as_dict(metrics.model_utility_closer_look(summary, utility_splits))
        except E2UError as exc:
            out["model_utility"] = {"value": None, "reason": str(exc)}
    view = _tofu_view(summary)
    if len(view) == len(metrics.TOFU_UTILITY_SPLITS) and all(
            view[s].get(m) is not None for s in view for m in metrics.TOFU_UTILITY_METRICS):
        out["model_utility_tofu"] = _as_dict(metrics.model_utility_tofu(view))
    if "forget" in summary:
        forget = summary["forget"]
        out["forget_efficacy"] = _as_dict(metrics.forget_efficacy(
            forget.get("rouge_l_recall"), forget.get("probability"), forget.get("truth_ratio"),
            forget.get("cosine_similarity"), forget.get("entailment"),
        ))
    ours, reference = forget_truth_ratios(results), forget_truth_ratios(retain_results)
    if ours and reference:
        out["forget_quality"] = {"value": metrics.forget_quality(ours, reference),
                                 "used": ["forget/truth_ratio (per item)", "retain model forget/truth_ratio (per item)"],
                                 "skipped": {}}
    out.update(combined_scores(summary))
    return out


def combined_scores(summary: dict) -> dict:
    """`combined_score` from forget's Rouge1 recall, `combined_score_rephrased` from forget_paraphrased's,
    each against the retained split's (`paper_metrics.retain_split`); absent where a Rouge1 recall is missing."""
    out = {}
    kept = paper_metrics.retain_split(summary)
    kept_rouge1 = summary[kept].get("rouge1_recall") if kept else None
    for name, forget in (("combined_score", "forget"), ("combined_score_rephrased", "forget_paraphrased")):
        forget_rouge1 = summary.get(forget, {}).get("rouge1_recall")
        if forget_rouge1 is not None and kept_rouge1 is not None:
            out[name] = {"value": paper_metrics.combined_score(forget_rouge1, kept_rouge1),
                         "used": [f"{forget}/rouge1_recall", f"{kept}/rouge1_recall"], "skipped": {}}
    return out


def _as_dict(aggregate: metrics.Aggregate) -> dict:
    return {"value": aggregate.value, "used": list(aggregate.used), "skipped": dict(aggregate.skipped)}
