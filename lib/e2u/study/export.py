"""`e2u export STUDY --format csv|parquet`: a study's per-item results as one long table, for pandas and others.

One row per cell, split, item and metric: `study, setting, method, label, seed, split, item, question, truth,
answer, metric, before, after`. `item` is the question's index in its split, `truth` the reference answer,
`answer` the greedy answer after unlearning, `before` and `after` the metric's value for that item on the unedited
and on the unlearned model (NaN where the unedited evaluation lacks it). The metrics are every per-item number a
result file stores (`evaluation.evaluate`: Rouge1 and ROUGE-L recall, probabilities, MRR, Top-Hit, refusal as 0/1,
truth ratio, ...); `unchanged` (before and after compared) is not a metric of a model and is left out. The
reruns beside the study (`e2u rerun`) are left out too, unless asked for: their label then names the rerun.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from e2u.errors import E2UError
from e2u.files import atomic_path
from e2u.study.result_files import read_results, read_variants

COLUMNS = ("study", "setting", "method", "label", "seed", "split", "item", "question", "truth", "answer", "metric",
           "before", "after")
NOT_METRICS = frozenset({"question", "reference", "generated", "unchanged"})
FORMATS = ("csv", "parquet")


def item_metrics(item: dict) -> list[str]:
    """The metrics of one per-item record: its numbers (flags as 0/1), in the order the record stores them."""
    return [k for k, v in item.items() if k not in NOT_METRICS and (isinstance(v, (int, float)) or v is None)]


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _rows(study_name: str, result: dict) -> list[tuple]:
    params = result["params"]
    label = params["label"] + (f".{result['variant']}" if result.get("variant") else "")
    cell = (study_name, params["setting"], params["method"], label, params["seed"])
    rows = []
    for split, items in result["after"].items():
        before = result["before"].get(split) or []
        for index, item in enumerate(items):
            old = before[index] if index < len(before) else {}
            for metric in item_metrics(item):
                rows.append((*cell, split, index, item["question"], item["reference"], item["generated"], metric,
                             _number(old.get(metric)), _number(item[metric])))
    return rows


def long_table(results_dir: str | Path, study_name: str, variants: bool = False) -> pd.DataFrame:
    """Every per-item value of study `study_name` (`<results_dir>/<study_name>/<setting>/<cell>.json`) as one long
    table (`COLUMNS`), the study's cells in setting and cell order; with `variants`, its reruns after them."""
    directory = Path(results_dir) / study_name
    results = read_results(directory) + (read_variants(directory) if variants else [])
    if not results:
        raise E2UError(f"export: no result files (<setting>/<cell>.json) for study {study_name!r} in {directory}; "
                       "run `e2u study run` first")
    return pd.DataFrame([row for r in results for row in _rows(study_name, r)], columns=list(COLUMNS))


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise E2UError(f"export: unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def write_table(table: pd.DataFrame, out: str | Path, format: str) -> None:
    """Write `table` to `out` as csv or parquet, whole or not at all (a temporary file renamed into place)."""
    _check_format(format)
    with atomic_path(out, f".{format}") as tmp:
        if format == "csv":
            table.to_csv(tmp, index=False)
            return
        try:
            table.to_parquet(tmp, index=False, engine="pyarrow")
        except ImportError:
            raise E2UError(f"export to {out}: parquet needs pyarrow, which is not installed; `pip install pyarrow` "
                           "enables it (or use --format csv)") from None


def export_table(results_dir: str | Path, study_name: str, out: str | Path, format: str = "csv",
                 variants: bool = False) -> int:
    """`e2u export`: `long_table` written to `out`; returns its number of rows."""
    _check_format(format)
    table = long_table(results_dir, study_name, variants)
    write_table(table, out, format)
    return len(table)
