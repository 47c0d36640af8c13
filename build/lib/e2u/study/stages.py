"""Wall time of each `make book` stage, recorded next to the results so the book can show it."""

from __future__ import annotations

import json
from pathlib import Path

from e2u.files import write_json_atomic


def record_stage(results_dir: str | Path, study_name: str, stage: str, seconds: float) -> None:
    """Set `stage`'s seconds in `<results>/<study>/stages.json` (written atomically)."""
    path = Path(results_dir) / study_name / "stages.json"
    stages = read_stages(results_dir, study_name)
    stages[stage] = round(seconds, 1)
    write_json_atomic(path, stages)


def read_stages(results_dir: str | Path, study_name: str) -> dict:
    path = Path(results_dir) / study_name / "stages.json"
    try:
        stages = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return stages if isinstance(stages, dict) else {}
