"""The reruns beside the study (`e2u rerun`, `study.variants`), which the summary lists apart from its cells.

`report.load_results` reads only the study's own cells, so the claims and the setting pages never see a rerun;
the summary's last section reads the variants (`result_files.read_variants`) and sets each beside the study's
cell it varies.
"""

from __future__ import annotations

import pandas as pd

from e2u.book.report import headline_table


def variants_table(variants: list[dict], results: list[dict]) -> pd.DataFrame:
    """The headline metrics of each rerun, after the study's own cell it varies (`run`: `study`, or the rerun's
    name); a cell the study no longer has shows the rerun alone."""
    own = {(r["params"]["setting"], r["cell_id"]): r for r in results}
    rows, runs, shown = [], [], set()
    for variant in variants:  # sorted: a cell's variants follow each other
        key = (variant["params"]["setting"], variant["cell_id"])
        if key in own and key not in shown:
            shown.add(key)
            rows.append(own[key])
            runs.append("study")
        rows.append(variant)
        runs.append(variant["variant"])
    if not rows:
        return pd.DataFrame()
    table = headline_table(rows)
    table.insert(3, "run", runs)
    return table
