"""The summary chapter's tables, from result files only: per setting, one row per method and recipe, with the mean
and the spread over seeds of the headline measures.

* A row is one method run one way: its plain cells, or the cells of one recipe (merged queries, self-written
  targets, chunks; `claim_cells.recipe_kind`), never pooled with the plain ones. Cells of one study label share
  a row; two labels of one method and recipe keep a row each, named by label.
* The measures, after unlearning: the combined score 1 − Rouge1(forget) + Rouge1(kept), Rouge1 recall on the
  forget and on the kept questions (retain, or neighbour for pretrained knowledge), and the combined score with
  the rephrased forget questions.
* The mean is over seeds; the spread is the sample standard deviation over seeds (blank with one seed).
* Each row links to its cells' pages (`book/runs/<study>/<setting>/<cell>`), one link per seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from e2u.book.claim_cells import CHUNKED, MERGED, PLAIN, recipe_kind
from e2u.evaluation.paper_metrics import retain_split

FAILED = " (failed edit)"  # what `cell.run` appends to a failed edit's method title
MEASURES = ("combined", "forget Rouge1", "kept Rouge1", "combined (rephrased)")


def recipe(params: dict) -> str:
    """The recipe a cell ran, as a row names it: plain, merged queries (how many per request), self-written
    targets, or in chunks (how many)."""
    kind = recipe_kind(params)
    if kind == MERGED:
        return f"{MERGED} ({params['merge_group']} per request)"
    if kind == CHUNKED:
        return f"in {params['chunks']} chunks"
    return kind


def cell_measures(result: dict) -> dict[str, float]:
    """The four measures of one cell after unlearning (NaN where the cell lacks one)."""
    after = result["summary"]["after"]
    keep = retain_split(after)
    aggregates = (result.get("aggregates") or {}).get("after") or {}

    def value(number):
        return float("nan") if number is None else float(number)

    return {"combined": value((aggregates.get("combined_score") or {}).get("value")),
            "forget Rouge1": value((after.get("forget") or {}).get("rouge1_recall")),
            "kept Rouge1": value((after.get(keep) or {}).get("rouge1_recall") if keep else None),
            "combined (rephrased)": value((aggregates.get("combined_score_rephrased") or {}).get("value"))}


def setting_kept_split(results: Sequence[dict], setting: str) -> str:
    """The kept questions' split in `setting` (retain or neighbour), as its cells name it."""
    splits = {retain_split(r["summary"]["after"]) for r in results if r["params"]["setting"] == setting}
    splits.discard(None)
    return splits.pop() if len(splits) == 1 else "kept"


def method_table(results: Sequence[dict], setting: str) -> pd.DataFrame:
    """One row per method and recipe of `setting`: method, recipe, label, seeds, cell ids, failed seeds, and for each
    measure its mean (`<measure>`) and spread (`<measure> sd`) over seeds. Plain rows first, each group best
    combined score first."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        if r["params"]["setting"] == setting:
            groups.setdefault((r["params"].get("label") or r["params"]["method"], recipe(r["params"])), []).append(r)
    rows = []
    for (label, how), cells in groups.items():
        cells = sorted(cells, key=lambda r: r["params"]["seed"])
        values = pd.DataFrame([cell_measures(r) for r in cells])
        row = {"method": cells[0]["method_title"].removesuffix(FAILED), "recipe": how, "label": label,
               "seeds": tuple(r["params"]["seed"] for r in cells), "cells": tuple(r["cell_id"] for r in cells),
               "failed": tuple(r["params"]["seed"] for r in cells if r.get("failed_edit"))}
        for measure in MEASURES:
            column = values[measure].dropna()
            row[measure] = column.mean() if len(column) else np.nan
            row[f"{measure} sd"] = column.std(ddof=1) if len(column) > 1 else np.nan
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    shared = table.duplicated(["method", "recipe"], keep=False)  # two labels of one method and recipe
    table.loc[shared, "method"] = table.loc[shared, "method"] + " (" + table.loc[shared, "label"] + ")"
    table["plain"] = table["recipe"] == PLAIN
    table = table.sort_values(["plain", "combined"], ascending=[False, False], na_position="last", kind="stable")
    return table.drop(columns="plain").reset_index(drop=True)


def _mean_sd(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


def _cell_links(row: pd.Series, study: str, setting: str) -> str:
    failed = set(row["failed"])
    return " · ".join(f"[{seed}](runs/{study}/{setting}/{cell}.ipynb)" + (" (failed edit)" if seed in failed else "")
                      for seed, cell in zip(row["seeds"], row["cells"]))


def method_markdown(results: Sequence[dict], setting: str, study: str) -> str:
    """`method_table` of `setting` as a Markdown table: mean ± sd per measure, the seeds linking to the cells' pages
    (links relative to the summary chapter, `book/summary`)."""
    table = method_table(results, setting)
    if table.empty:
        return f"No cell of setting `{setting}` has a result yet."
    keep = setting_kept_split(results, setting)
    header = ["method", "recipe", "combined", "forget Rouge1", f"{keep} Rouge1", "combined (rephrased)",
              "seeds (cell pages)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        numbers = [_mean_sd(row[m], row[f"{m} sd"]) for m in MEASURES]
        lines.append("| " + " | ".join([row["method"], row["recipe"], *numbers,
                                         _cell_links(row, study, setting)]) + " |")
    return "\n".join(lines)


def summary_markdown(results: Sequence[dict], study: str) -> str:
    """One `method_markdown` table per setting, each after a line naming the setting and linking to its results page
    (a line, not a heading: a heading inside a notebook's output is not a section of the page)."""
    settings = list(dict.fromkeys(r["params"]["setting"] for r in results))
    if not settings:
        return "No results."
    return "\n\n".join(f"**Setting `{s}`** ([its results page](results/{s}.ipynb)):\n\n"
                         + method_markdown(results, s, study) for s in settings)
