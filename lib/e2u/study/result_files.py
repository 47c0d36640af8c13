"""A study's result files as its readers want them: the study's own cells, or the reruns beside them.

`results/<study>/<setting>/<cell id>.json` is a cell; `<cell id>.rerun-....json` beside it a rerun
(`variants.py`); `scaling/` holds the cost chapter's measurements, not cells. The book (`report.load_results`),
the export (`export.py`) and the summary's reruns section read through here.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2u.study.scaling import SCALING_FOLDER
from e2u.study.variants import split_variant


def result_files(directory: str | Path, variants: bool = False) -> list[Path]:
    """The cells' result files under `directory` (`results/<study>`), sorted; the reruns' instead with `variants`."""
    return [p for p in sorted(Path(directory).glob("*/*.json"))
            if p.parent.name != SCALING_FOLDER and bool(split_variant(p.stem)[1]) == variants]


def read_results(directory: str | Path) -> list[dict]:
    """Every cell's result, sorted by setting then cell id."""
    results = [json.loads(p.read_text()) for p in result_files(directory)]
    return sorted(results, key=lambda r: (r["params"]["setting"], r["cell_id"]))


def read_variants(directory: str | Path) -> list[dict]:
    """Every rerun's result with `variant` (its name: what changed) added, sorted by setting, cell id and name."""
    found = [{**json.loads(p.read_text()), "variant": split_variant(p.stem)[1]}
             for p in result_files(directory, variants=True)]
    return sorted(found, key=lambda r: (r["params"]["setting"], r["cell_id"], r["variant"]))
