"""The claims chapter's tables and figures, from result files only (`claims_report` computes the verdicts).

* `verdict_table`: each claim, how it is tested, its margin, the verdict, and each comparison's mean,
  spread over seeds and number of seeds;
* `sequence_figure`: forget Rouge1 (over the questions unlearned so far) and retain Rouge1 after each chunk
  of sequential unlearning, one line per method;
* `merging_figure`: the combined score against the number of forget questions, merged queries against
  one edit per query, for ROME and MEMIT;
* `alignment_table` / `alignment_figure`: the human-aligned refusal rates per method, template targets
  against self-improved ones; `alignment_examples`: the answers side by side;
* `merging_table`: the edit requests and combined scores behind the merging figure;
* `rephrase_table`: the rephrase robustness of every method over seeds (`rephrase_robustness`).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from e2u.book.claim_tests import ClaimVerdict, combined, retain_rouge1
from e2u.evaluation.human_aligned import CHECKS
from e2u.evaluation.rephrase_robustness import robustness


def _name(result: dict) -> str:
    return f"{result['method_title']} ({result['params']['setting']})"


def verdict_table(verdicts: Sequence[ClaimVerdict]) -> pd.DataFrame:
    rows = []
    for v in verdicts:
        base = {"claim": v.claim.number, "statement": v.claim.statement, "verdict": v.verdict,
                "margin": v.claim.margin}
        if not v.comparisons:
            rows.append({**base, "comparison": "(no cells measure it yet)"})
        for c in v.comparisons:
            rows.append({**base, "comparison": c.name, "mean difference": round(c.mean, 3),
                         "spread (sd)": round(c.spread, 3), "seeds": len(c.differences), "supports": c.supports})
    return pd.DataFrame(rows).set_index(["claim", "statement", "verdict", "margin"])


def sequence_rows(results: Sequence[dict]) -> pd.DataFrame:
    """One row per (cell, chunk) of the cells run in chunks."""
    rows = []
    for r in results:
        for chunk in r.get("chunks", []):
            retain = retain_rouge1({"summary": {"after": chunk["summary"]}})
            rows.append({"method": r["method_title"], "setting": r["params"]["setting"], "seed": r["params"]["seed"],
                         "chunks done": chunk["chunk"] + 1, "questions unlearned": chunk["questions_unlearned"],
                         "forget Rouge1 (unlearned so far)": chunk["forget_rouge1_unlearned"],
                         "retain Rouge1": retain})
    return pd.DataFrame(rows)


def sequence_figure(results: Sequence[dict]):
    """Forget and retain Rouge1 against the chunks unlearned, per method; one panel row per setting."""
    rows = sequence_rows(results)
    if rows.empty:
        return None
    settings = list(dict.fromkeys(rows["setting"]))
    fig, axes = plt.subplots(len(settings), 2, figsize=(9, 3.2 * len(settings)), squeeze=False, layout="constrained")
    for i, setting in enumerate(settings):
        part = rows[rows["setting"] == setting]
        for j, metric in enumerate(("forget Rouge1 (unlearned so far)", "retain Rouge1")):
            sns.lineplot(part, x="chunks done", y=metric, hue="method", marker="o", ax=axes[i, j],
                         errorbar="sd", legend=(i == 0 and j == 1))
            axes[i, j].set_title(f"{setting}: {metric}", fontsize=10)
            axes[i, j].set_ylim(-0.05, 1.05)
    if axes[0, 1].get_legend() is not None:
        sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    plt.close(fig)
    return fig


def merging_rows(results: Sequence[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        params = r["params"]
        if params["method"] not in ("rome", "memit") or params.get("chunks", 1) > 1:
            continue
        rows.append({"method": r["method_title"].split(" (")[0], "setting": params["setting"].split("-")[0],
                     "seed": params["seed"],
                     "requests": "merged" if params.get("merge_group", 0) else "one per query",
                     "forget questions": len(r["after"]["forget"]),
                     "edit requests": len(r["log"].get("requests", [])),
                     "combined": combined(r)})
    return pd.DataFrame(rows)


def merging_table(results: Sequence[dict]) -> pd.DataFrame:
    """Per setting kind, method, forget-set size and requests: the edit requests made and the combined score
    (mean and sd over seeds, and the seed count), for the settings where some cell merged queries."""
    rows = merging_rows(results)
    if rows.empty:
        return rows
    rows = rows[rows["setting"].isin(set(rows.loc[rows["requests"] == "merged", "setting"]))]
    grouped = rows.groupby(["setting", "method", "forget questions", "requests"])
    return grouped.agg(**{"edit requests": ("edit requests", "mean"), "combined (mean)": ("combined", "mean"),
                          "combined (sd)": ("combined", "std"), "seeds": ("seed", "nunique")}).round(3)


def merging_figure(results: Sequence[dict]):
    """Combined score against the number of forget questions: merged queries against one per query; one
    panel per kind of setting ("pretrained-n40" is drawn with "pretrained")."""
    rows = merging_rows(results)
    if rows.empty or set(rows["requests"]) != {"merged", "one per query"}:
        return None
    settings = list(dict.fromkeys(rows.loc[rows["requests"] == "merged", "setting"]))  # where merging ran
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 3.4), squeeze=False, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        sns.lineplot(rows[rows["setting"] == setting], x="forget questions", y="combined", hue="method",
                     style="requests", marker="o", errorbar="sd", ax=ax)
        ax.set_title(setting, fontsize=10)
    plt.close(fig)
    return fig


def alignment_rows(results: Sequence[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        rates = (r.get("human_aligned") or {}).get("rates")
        if not rates or r["params"].get("chunks", 1) > 1:
            continue
        rows.append({"method": r["method_title"], "setting": r["params"]["setting"], "seed": r["params"]["seed"],
                     "targets": "self-improved" if r["params"].get("refusal") == "self" else "template",
                     **{name: rates[name] for name in (*CHECKS, "aligned")}})
    return pd.DataFrame(rows)


def alignment_table(results: Sequence[dict]) -> pd.DataFrame:
    rows = alignment_rows(results)
    if rows.empty:
        return rows
    return rows.groupby(["setting", "method", "targets"])[[*CHECKS, "aligned"]].mean().round(3)


def alignment_figure(results: Sequence[dict]):
    """The human-aligned rate per method, template against self-improved targets, one panel per setting."""
    rows = alignment_rows(results)
    if rows.empty:
        return None
    settings = list(dict.fromkeys(rows["setting"]))
    height = 0.8 + 0.35 * rows["method"].nunique()
    fig, axes = plt.subplots(1, len(settings), figsize=(4.8 * len(settings), height), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, setting in zip(axes[0], settings):
        sns.barplot(rows[rows["setting"] == setting], y="method", x="aligned", hue="targets", errorbar="sd", ax=ax)
        ax.set_xlim(0, 1)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("human-aligned rate")
    plt.close(fig)
    return fig


def alignment_examples(results: Sequence[dict], n: int = 2) -> pd.DataFrame:
    """The first `n` forget questions of each setting with every method's answer and its checks."""
    rows = []
    for r in results:
        answers = r["after"].get("forget", [])[:n]
        checks = ((r.get("human_aligned") or {}).get("per_item") or [])[:n]
        for answer, check in zip(answers, checks):
            failed = [name for name in CHECKS if not check[name]]
            rows.append({"setting": r["params"]["setting"], "question": answer["question"], "method": _name(r),
                         "answer": answer["generated"], "aligned": check["aligned"],
                         "fails": ", ".join(failed) or "-"})
    return pd.DataFrame(rows)


def rephrase_table(results: Sequence[dict]) -> pd.DataFrame:
    """Per setting and method: the rephrase gap and the forgetting kept, mean and sd over seeds, with the
    seed count and the reasons a seed could not be measured (`rephrase_rows` has every cell)."""
    rows = rephrase_rows(results)
    if rows.empty:
        return rows
    grouped = rows.groupby(["setting", "method"], sort=False)
    gap, held = "Rouge1 gap (rephrased - original)", "forgetting kept under rephrasing"
    return grouped.agg(**{f"{gap} mean": (gap, "mean"), f"{gap} sd": (gap, "std"), f"{held} mean": (held, "mean"),
                          f"{held} sd": (held, "std"), "seeds": ("seed", "nunique"),
                          "note": ("note", lambda notes: "; ".join(sorted({n for n in notes if n})))}).round(3)


def rephrase_rows(results: Sequence[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        if r["params"].get("chunks", 1) > 1:
            continue
        out = robustness(r["summary"]["before"], r["summary"]["after"])
        entry = out.get("rouge1_recall") or {}
        rows.append({"setting": r["params"]["setting"], "method": r["method_title"], "seed": r["params"]["seed"],
                     "Rouge1 gap (rephrased - original)": entry.get("gap"),
                     "forgetting kept under rephrasing": entry.get("held"),
                     "note": entry.get("reason") or out.get("reason", "")})
    return pd.DataFrame(rows)


def crafted_targets(results: Sequence[dict], n: int = 3) -> pd.DataFrame:
    """The first `n` refusal targets each self-improvement cell wrote (`recipes.self_improvement`), with
    where each came from (the model, or the template when the model's text failed the filter, and why)."""
    rows = []
    for r in results:
        for target in (r.get("crafted_targets") or [])[:n]:
            rows.append({"setting": r["params"]["setting"], "method": r["method_title"], "seed": r["params"]["seed"],
                         "question": target["question"], "target": target["target"], "source": target["source"],
                         "why not the model's": target.get("reason") or "-"})
    return pd.DataFrame(rows)
