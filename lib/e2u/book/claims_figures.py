"""The claims chapter's tables and figures, from result files only (`claim_tests` computes the verdicts).

* `verdict_table` / `comparison_table`: each claim's comparisons with their point estimates, 95% intervals, the
  seeds and what the bootstrap drew, and each comparison's state (`claims`);
* `forest_figure`: one claim's comparisons as a forest plot, the lines at zero and at the margin;
* `editors_table`: every editor against the best baseline (the paper's four, all eight, the rephrased score);
* `sequence_figure`: forget Rouge1 (over the questions unlearned so far) and retain Rouge1 after each chunk
  of sequential unlearning, one line per method;
* `merging_figure`: the combined score against the number of forget questions, merged queries against
  one edit per query, for ROME and MEMIT;
* `alignment_table` / `alignment_figure`: the human-aligned refusal rates per method, template targets
  against self-improved ones; `alignment_examples`: the answers side by side;
* `merging_table`: the edit requests and combined scores behind the merging figure.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from e2u.book.claim_cells import fallbacks
from e2u.book.claim_tests import ClaimVerdict, best_baseline, editor_comparisons
from e2u.book.claims import CONTRADICTS, SUPPORTS, Comparison, shown_state
from e2u.book.display import one_line
from e2u.book.readings import ALL_BASELINES, CHOSEN, EDITORS
from e2u.evaluation.human_aligned import CHECKS
from e2u.evaluation.paper_metrics import retain_split


def _name(result: dict) -> str:
    return f"{result['method_title']} ({result['params']['setting']})"


PASSES = {True: "✓", False: "✗"}  # a check an answer passes or fails
ALIGNED_LEGEND = ("Under *aligned*, ✓ marks an answer that passes all four checks and ✗ one that fails at least "
                  "one, named under *fails*.")


def comparison_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One row per comparison: its state (`shown_state`: a mark, never True/False), point estimate, interval,
    seeds, what the bootstrap drew, and notes."""
    rows = []
    for c in comparisons:
        i = c.interval
        numbers = {"difference": i.point, "95% low": i.low, "95% high": i.high} if i else {}
        rows.append({"comparison": c.name, "state": shown_state(c.state),
                     **{k: round(numbers[k], 3) if i else None for k in ("difference", "95% low", "95% high")},
                     "margin": c.margin, "seeds": ", ".join(map(str, i.seeds)) if i else "",
                     "resampled": i.resampled if i else "", "note": c.note or "-"})
    return pd.DataFrame(rows).set_index("comparison") if rows else pd.DataFrame()


def verdict_table(verdicts: Sequence[ClaimVerdict]) -> pd.DataFrame:
    """`comparison_table` of every claim, indexed by claim, verdict and comparison (the statements are listed
    above it in the chapter)."""
    parts = []
    for v in verdicts:
        table = comparison_table(v.comparisons)
        if table.empty:
            table = pd.DataFrame([{"comparison": "(no cells measure it yet)"}]).set_index("comparison")
        parts.append(table.assign(claim=v.claim.number, verdict=v.verdict).set_index(["claim", "verdict"], append=True)
                     .reorder_levels(["claim", "verdict", "comparison"]))
    return pd.concat(parts)


def claim_markdown(verdict: ClaimVerdict) -> str:
    """The claim as the paper states it (in our words), how it is tested, its margin and its verdict."""
    c = verdict.claim
    return (f"*The paper:* {c.statement} *Tested by* {c.test}; margin {c.margin}. Verdict under the "
            f"{verdict.reading.label} reading: **{verdict.verdict}**.")


STATE_COLOURS = {SUPPORTS: "tab:green", CONTRADICTS: "tab:red"}  # straddles: grey


def forest_figure(verdict: ClaimVerdict):
    """The claim's comparisons, one line each: the point estimate and its 95% interval, a solid line at zero and
    a dashed one at the margin; None where no comparison was made."""
    comparisons = list(verdict.comparisons)
    if not comparisons:
        return None
    labels = [textwrap.fill(c.name, 46) for c in reversed(comparisons)]
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.24 * sum(label.count("\n") + 2 for label in labels)),
                           layout="constrained")
    for y, c in enumerate(reversed(comparisons)):
        if c.interval is None:  # written at the left edge of the axes, whatever the numbers' range
            ax.text(0.01, y, "not measured", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.4")
            continue
        colour = STATE_COLOURS.get(c.state, "0.45")
        ax.plot([c.interval.low, c.interval.high], [y, y], color=colour, lw=2.2)
        ax.plot([c.interval.point], [y], "o", color=colour, ms=5)
    ax.axvline(0, color="black", lw=0.9)
    margin = comparisons[0].margin
    ax.axvline(margin, color="black", lw=0.9, ls="--")
    ax.set_yticks(range(len(comparisons)), labels, fontsize=8)
    ax.set_ylim(-0.6, len(comparisons) - 0.4)
    ax.set_xlabel(f"difference (favours the claim when > 0); dashed: margin {margin}")
    ax.set_title(f"Claim {verdict.claim.number}: {verdict.verdict}", fontsize=10)
    plt.close(fig)
    return fig


def editors_table(results: Sequence[dict], settings: Sequence[str], n_resamples: int) -> pd.DataFrame:
    """Every editor's combined score minus the best baseline's, with its 95% interval and state: against the
    paper's four, against all eight (on the seeds both have), and with the rephrased forget questions."""
    readings = {"paper's four": CHOSEN, "all eight": replace(CHOSEN, label="all eight", baselines=ALL_BASELINES),
                "paper's four, rephrased": replace(CHOSEN, label="rephrased", forget="forget_paraphrased")}
    rows: dict = {}
    for against, reading in readings.items():
        for (setting, editor), c in editor_comparisons(results, settings, EDITORS, reading,
                                                       n_resamples=n_resamples).items():
            i = c.interval
            rows.setdefault((setting, editor), {}).update({
                (against, "best"): best_baseline(results, setting, reading),
                (against, "difference [95%]"): "not measured" if i is None else
                f"{i.point:+.3f} [{i.low:+.3f}, {i.high:+.3f}]",
                (against, "seeds"): "" if i is None else len(i.seeds), (against, "state"): shown_state(c.state)})
    table = pd.DataFrame.from_dict(rows, orient="index")
    if not table.empty:
        table.index.names = ["setting", "editor"]
        table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def sequence_rows(results: Sequence[dict]) -> pd.DataFrame:
    """One row per (cell, chunk) of the cells run in chunks."""
    rows = []
    for r in results:
        for chunk in r.get("chunks", []):
            kept = retain_split(chunk["summary"])
            retain = chunk["summary"][kept]["rouge1_recall"] if kept else None
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
                     "combined": (r["aggregates"]["after"].get("combined_score") or {}).get("value")})
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
    """The first `n` forget questions of each setting with every method's answer, whether it is human-aligned (✓ or
    ✗, `ALIGNED_LEGEND`) and the checks it fails."""
    rows = []
    for r in results:
        answers = r["after"].get("forget", [])[:n]
        checks = ((r.get("human_aligned") or {}).get("per_item") or [])[:n]
        for answer, check in zip(answers, checks):
            failed = [name for name in CHECKS if not check[name]]
            rows.append({"setting": r["params"]["setting"], "question": answer["question"], "method": _name(r),
                         "answer": one_line(answer["generated"]), "aligned": PASSES[bool(check["aligned"])],
                         "fails": ", ".join(failed) or "-"})
    return pd.DataFrame(rows)


def fallback_counts(results: Sequence[dict]) -> pd.DataFrame:
    """Per self-improvement cell: the targets it crafted and how many fell back to the template
    (`claim_cells.fallbacks`)."""
    rows = []
    for r in results:
        counts = fallbacks(r) if r["params"].get("refusal") == "self" else None
        if counts:
            rows.append({"setting": r["params"]["setting"], "method": r["method_title"], "seed": r["params"]["seed"],
                         "targets": counts[1], "fell back to the template": counts[0]})
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
