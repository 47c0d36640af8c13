"""`e2u compare A B`: do two sets of result files hold the same per-item numbers?

Every cell file under A (`<setting>/<cell>.json`, as `results/<study>/` holds them) is matched with the
file of the same name under B, and every per-item value of its evaluations (`before`, `after`,
`retain_model`) and their summaries and aggregates is compared: numbers to an absolute tolerance,
strings and flags exactly. What a rerun may change (timings, cache keys, logs, the scaling files) is not
compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from e2u.study.scaling import SCALING_FOLDER

COMPARED = ("before", "after", "retain_model", "summary", "aggregates")


@dataclass
class FileComparison:
    name: str
    largest: float = 0.0
    differences: list[str] = field(default_factory=list)


def _walk(a, b, where: str, tolerance: float, out: FileComparison) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            if key not in a or key not in b:
                out.differences.append(f"{where}/{key}: only in {'A' if key in a else 'B'}")
            else:
                _walk(a[key], b[key], f"{where}/{key}", tolerance, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.differences.append(f"{where}: {len(a)} items vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{where}[{i}]", tolerance, out)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        if math.isnan(a) and math.isnan(b):
            return
        gap = abs(a - b)
        out.largest = max(out.largest, gap)
        if not gap <= tolerance:
            out.differences.append(f"{where}: {a!r} vs {b!r}")
    elif a != b:
        out.differences.append(f"{where}: {a!r} vs {b!r}")


def compare_results(a_dir: str | Path, b_dir: str | Path, tolerance: float = 1e-6) -> list[FileComparison]:
    """One comparison per cell file of `a_dir`; a file missing from `b_dir` is a difference."""
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    comparisons = []
    for path in sorted(a_dir.glob("*/*.json")):
        if path.parent.name == SCALING_FOLDER:  # timings, not per-item numbers
            continue
        name = str(path.relative_to(a_dir))
        found = FileComparison(name)
        other = b_dir / name
        if not other.is_file():
            found.differences.append(f"missing in {b_dir}")
        else:
            a, b = json.loads(path.read_text()), json.loads(other.read_text())
            for part in COMPARED:
                if part in a or part in b:
                    _walk(a.get(part), b.get(part), part, tolerance, found)
        comparisons.append(found)
    return comparisons
