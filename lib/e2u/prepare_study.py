"""`e2u prepare <study>`: everything a study's cells share, done once before they run.

* every model the study names is loaded (the embedded one converted to safetensors on first use);
* `probe` settings ask the model their questions (cached per model fingerprint);
Each step is cached, so preparing twice costs only the loads.
"""

from __future__ import annotations

import time
from typing import Iterator

from .study import Study


def prepare_study(study: Study) -> Iterator[str]:
    """Prepare every distinct (model, data) of the study; yields one progress line per step."""
    from .cell import load_splits
    from .models import load_model

    seen = set()
    for cell in study.cells:
        step = (cell.model, cell.data_source, cell.data_path, tuple(sorted(cell.data_options.items())))
        if step in seen:
            continue
        seen.add(step)
        started = time.perf_counter()
        model, tokenizer = load_model(cell.model, cell.device or None, cell.dtype or None)
        splits = load_splits(model, tokenizer, cell)
        sizes = ", ".join(f"{name} {len(records)}" for name, records in splits.items())
        yield f"setting {cell.setting}: model {cell.model}, data {cell.data_source} ({sizes}) ready in " \
              f"{time.perf_counter() - started:.1f} s"
