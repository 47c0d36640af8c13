"""The book's headline figure: the paper's combined score, 1 - Rouge1(forget) + Rouge1(kept), of every method after
unlearning, with the forget questions as written and rephrased, the editors above all eight unlearning baselines,
one dot per cell (each seed its own dot, a row's dots drawn slightly apart), one panel per setting (pretrained
knowledge first, as the paper).

It reads the plain cells (no merged queries, no self-written targets, no chunks: `claim_cells.recipe_kind`) of the
settings where an editor and a baseline both ran, and each cell's `combined_score` and `combined_score_rephrased`
(`evaluation.aggregates`) as its result file holds them.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from e2u.book.claim_cells import PLAIN, recipe_kind
from e2u.book.readings import ALL_BASELINES, EDITORS, PAPER_BASELINES

AS_WRITTEN, REPHRASED = "forget questions as written", "forget questions rephrased"
SCORES = ((AS_WRITTEN, "combined_score"), (REPHRASED, "combined_score_rephrased"))
ORDER = (*EDITORS, *ALL_BASELINES)  # top to bottom: editors, the paper's baselines, the stronger ones
GROUPS = (("editors", EDITORS), ("the paper's baselines", PAPER_BASELINES),
          ("baselines beyond the paper", tuple(b for b in ALL_BASELINES if b not in PAPER_BASELINES)))
MARKERS = {AS_WRITTEN: ("o", "tab:blue", -0.2), REPHRASED: ("D", "tab:orange", 0.2)}  # marker, colour, row offset
SPREAD = 0.07  # a row's dots (its cells, one per seed) drawn this far apart, so that equal scores stay apart


def headline_rows(results: Sequence[dict]) -> pd.DataFrame:
    """One row per plain cell and question form (as written, rephrased) that has its score: setting, method, its
    title, seed, cell, form, combined score; only settings where an editor and a baseline both ran."""
    rows = []
    for r in results:
        params = r["params"]
        if recipe_kind(params) != PLAIN or params["method"] not in ORDER:
            continue
        for form, key in SCORES:
            value = ((r.get("aggregates") or {}).get("after", {}).get(key) or {}).get("value")
            if value is not None:
                rows.append({"setting": params["setting"], "method": params["method"],
                             "title": r["method_title"].split(" (")[0], "seed": params["seed"],
                             "cell": r.get("cell_id", params["method"]), "form": form, "combined": float(value)})
    table = pd.DataFrame(rows, columns=["setting", "method", "title", "seed", "cell", "form", "combined"])
    both = [s for s, part in table.groupby("setting", sort=False)
            if part["method"].isin(EDITORS).any() and part["method"].isin(ALL_BASELINES).any()]
    return table[table["setting"].isin(both)].reset_index(drop=True)


def headline_figure(results: Sequence[dict]):
    """The figure (module docstring); None where no setting has both an editor and a baseline."""
    rows = headline_rows(results)
    if rows.empty:
        return None
    settings = sorted(dict.fromkeys(rows["setting"]), key=lambda s: not s.startswith("pretrained"))  # as the paper
    methods = [m for m in ORDER if m in set(rows["method"])]
    titles = dict(zip(rows["method"], rows["title"]))
    row_of = {m: k for k, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings) + 1.4, 0.9 + 0.36 * len(methods)),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        part = rows[rows["setting"] == setting]
        for form, (marker, colour, offset) in MARKERS.items():
            dots = part[part["form"] == form]
            spread = dots.groupby("method").cumcount() - (dots.groupby("method")["cell"].transform("size") - 1) / 2
            ax.scatter(dots["combined"], dots["method"].map(row_of) + offset + SPREAD * spread, marker=marker, s=22,
                       color=colour, alpha=0.75, linewidths=0, label=form)
        for k, (name, group) in enumerate(GROUPS):  # each group named, a line above each group of baselines
            first = min((row_of[m] for m in methods if m in group), default=None)
            if first is None:
                continue
            if k:
                ax.axhline(first - 0.5, color="0.75", lw=0.8)
            if ax is axes[0, -1]:
                ax.text(0.99, first - 0.45, name, transform=ax.get_yaxis_transform(), ha="right", va="top",
                        fontsize=7, color="0.4", style="italic")
        ax.set_title(setting, fontsize=10)
        ax.set_xlim(-0.05, 2.05)
        ax.grid(axis="x", color="0.92")
    fig.supxlabel("combined score, 1 - Rouge1(forget) + Rouge1(kept): higher forgets more and keeps more",
                  fontsize=9)
    axes[0, 0].set_yticks(range(len(methods)), [titles[m] for m in methods])
    axes[0, 0].set_ylim(len(methods) - 0.5, -0.5)  # editors on top
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)
    plt.close(fig)
    return fig
