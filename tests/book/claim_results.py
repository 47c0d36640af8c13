"""Hand-built result files for the claims' tests: a cell's per-item values after unlearning (what the claims
resample), its summary, and the fields that say which recipe it ran."""

from statistics import mean


def cell(setting, method, seed, forget, kept, rephrased=None, aligned=None, merge_group=0, chunks=1,
         refusal="fixed", failed=False, crafted=None, answers=None, before=0.9, kept_split="retain",
         independent=None, label=None):
    """One result: `forget`, `kept` (and `rephrased`, `independent`) per-item Rouge1 after unlearning (RougeL the
    same), the human-aligned check per forget question (`aligned`, 0/1), the questions of the setting and seed."""
    rephrased = forget if rephrased is None else rephrased
    splits = {"forget": forget, "forget_paraphrased": rephrased, kept_split: kept}
    if independent is not None:
        splits["independent"] = independent
    after = {split: [{"question": f"{setting} seed {seed} {split} {i}", "reference": f"answer {i}",
                      "generated": (answers or f"{method}-{label or ''}-{merge_group}-{refusal}") + f" {i}",
                      "rouge1_recall": v, "rouge_l_recall": v} for i, v in enumerate(values)]
             for split, values in splits.items()}
    summary_after = {split: {"rouge1_recall": mean(v), "rouge_l_recall": mean(v)} for split, v in splits.items()}
    summary_before = {split: {"rouge1_recall": before if split.startswith("forget") else mean(v),
                              "rouge_l_recall": before if split.startswith("forget") else mean(v)}
                      for split, v in splits.items()}
    result = {"cell_id": f"{label or method}-seed{seed}", "method_title": method.upper(),
              "params": {"setting": setting, "method": method, "seed": seed, "merge_group": merge_group,
                         "chunks": chunks, "refusal": refusal, "label": label or method},
              "summary": {"before": summary_before, "after": summary_after},
              "aggregates": {"after": {"combined_score": {"value": 1 - mean(forget) + mean(kept)}}},
              "after": after, "log": {"requests": [{}] * len(forget)}}
    if aligned is not None:
        result["human_aligned"] = {"rates": {"aligned": mean(aligned)},
                                   "per_item": [{"aligned": bool(a)} for a in aligned]}
    if failed:
        result["failed_edit"] = f"{method}: the edit failed"
        result["method_title"] += " (failed edit)"
    if crafted is not None:
        result["crafted_targets"] = [{"question": f"q{i}", "target": "I don't know.", "source": source,
                                      "reason": ""} for i, source in enumerate(crafted)]
    return result
