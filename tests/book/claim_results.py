"""Hand-built result files for the claims' tests: a cell's per-item values after unlearning (what the claims
resample), its summary, and the fields that say which recipe it ran."""

import json
from statistics import mean

import papermill

from e2u.evaluation.human_aligned import rates
from e2u.files import SOURCE_ROOT as ROOT


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
              "timings_s": {"unlearn": 1.0},
              "params": {"setting": setting, "method": method, "seed": seed, "merge_group": merge_group,
                         "chunks": chunks, "refusal": refusal, "label": label or method},
              "summary": {"before": summary_before, "after": summary_after},
              "aggregates": {"after": {"combined_score": {"value": 1 - mean(forget) + mean(kept)},
                                       "combined_score_rephrased": {"value": 1 - mean(rephrased) + mean(kept)}}},
              "after": after, "log": {"requests": [{}] * len(forget)}}
    if aligned is not None:
        per_item = [{"refusal": bool(a), "fluent": True, "no_leak": True, "on_topic": bool(a), "aligned": bool(a)}
                    for a in aligned]
        result["human_aligned"] = {"rates": rates(per_item), "per_item": per_item}
    if chunks > 1:
        result["chunks"] = [{"chunk": k, "questions_unlearned": (k + 1) * len(forget) // chunks,
                             "forget_rouge1_unlearned": mean(forget), "summary": summary_after} for k in range(chunks)]
    if failed:
        result["failed_edit"] = f"{method}: the edit failed"
        result["method_title"] += " (failed edit)"
    if crafted is not None:
        result["crafted_targets"] = [{"question": f"q{i}", "target": "I don't know.", "source": source,
                                      "reason": ""} for i, source in enumerate(crafted)]
    return result


def default_like_study(folder):
    """Result files shaped as the default study's (three seeds of the paper's nine methods in two settings, the
    extra baselines on seed 0, merged, self-written and chunked cells on seed 0) under `folder/<setting>/`."""
    import json
    import random

    rng = random.Random(0)
    written = []

    def noisy(level, n):
        return [round(min(1.0, max(0.0, level + rng.uniform(-0.2, 0.2))), 3) for _ in range(n)]

    def add(setting, method, seed, forget, kept, aligned, **kw):
        written.append(cell(setting, method, seed, noisy(forget, 10), noisy(kept, 20),
                            rephrased=noisy(min(1.0, forget + 0.1), 10),
                            aligned=[rng.random() < aligned for _ in range(10)], **kw))

    levels = {"rome": (0.2, 0.5, 0.1), "memit": (0.3, 0.6, 0.1), "alphaedit": (0.1, 0.8, 0.2),
              "grace": (0.1, 0.9, 0.0), "wise": (0.1, 0.85, 0.3), "gradient_ascent": (0.7, 0.8, 0.0),
              "kl": (0.7, 0.8, 0.0), "gradient_difference": (0.4, 0.7, 0.0), "dpo": (0.3, 0.6, 0.5),
              "npo": (0.3, 0.8, 0.0), "simnpo": (0.5, 0.8, 0.0), "idk": (0.2, 0.7, 0.6), "rmu": (0.6, 0.8, 0.0)}
    for setting in ("pretrained", "finetuned"):
        for method, (forget, kept, aligned) in levels.items():
            for seed in ((0, 1, 2) if method not in ("npo", "simnpo", "idk", "rmu") else (0,)):
                failed = method == "wise" and setting == "finetuned"  # flagged, and it forgot little
                add(setting, method, seed, 0.7 if failed else forget, kept, aligned, failed=failed,
                    answers="ga" if method in ("kl", "gradient_ascent") else None)
        add(setting, "wise", 0, 0.1, 0.85, 0.8, refusal="self", label="wise-self",
            crafted=["template"] * 10 if setting == "finetuned" else ["model"] * 7 + ["template"] * 3)
    for method in ("rome", "memit"):
        add("finetuned", method, 0, 0.2, 0.6, 0.1, merge_group=2, label=f"{method}-merged")
        add("pretrained", method, 0, 0.2, 0.5, 0.1, chunks=3, label=f"{method}-chunks")
    for r in written:
        path = folder / r["params"]["setting"] / f"{r['cell_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    return written


def run_chapter_on_default_like_study(chapter: str, tmp_path) -> list[dict]:
    """The cells of `notebooks/<chapter>.ipynb` executed by papermill on `default_like_study` result files."""
    study = tmp_path / "results" / "s"
    default_like_study(study)
    out = tmp_path / f"{chapter}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{chapter}.ipynb"), str(out), kernel_name="python3",
                               progress_bar=False, parameters={"results_dir": str(study), "study_name": "s"},
                               cwd=str(ROOT / "notebooks"))
    return json.loads(out.read_text())["cells"]
