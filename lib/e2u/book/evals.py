"""What `e2u eval` measured on a setting (`<setting>/evals/<name>.json`), shown apart from the study's cells."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from e2u.study.evals import EVALS

SPLITS = ("forget", "forget_paraphrased", "retain", "neighbour")
METRICS = {"rouge1_recall": "Rouge1", "refusal_rate": "refusal"}


def evals_table(results_dir: str | Path, setting: str) -> pd.DataFrame:
    """One row per evaluation of the setting: what was evaluated, then Rouge1 and refusal rate per split."""
    rows = []
    for path in sorted((Path(results_dir) / setting / EVALS).glob("*.json")):
        result = json.loads(path.read_text())
        what = result["evaluated"]
        row = {"evaluation": result["name"],
               "evaluated": Path(what["change"]).name if "change" in what else what.get("model")}
        for split in SPLITS:
            for metric, title in METRICS.items():
                value = result["summary"]["after"].get(split, {}).get(metric)
                if value is not None:
                    row[f"{split} {title}"] = round(value, 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("evaluation") if rows else pd.DataFrame(rows)
