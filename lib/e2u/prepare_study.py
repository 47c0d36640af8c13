"""`e2u prepare <study>`: everything a study's cells share, done once before they run.

* every model the study names is loaded (the embedded one converted to safetensors on first use);
* `fictional` settings finetune their target and retain models (`setting_models`, cached);
* `probe` settings ask the model their questions (cached per model fingerprint);
* the unedited model (and the retain model) is evaluated once on the setting's data (cached), so
  every cell of the setting starts from the stored evaluation;
Each step is cached, so preparing twice costs only the loads.
"""

from __future__ import annotations

import time
from typing import Iterator

from .study import Study


def prepare_study(study: Study) -> Iterator[str]:
    """Prepare every distinct (model, data) of the study; yields one progress line per step."""
    from .cell import evaluate_cached, evaluate_retain_model, load_splits
    from .entailment import load_entailment
    from .models import load_model
    from .setting_models import setting_models

    seen = set()
    for cell in study.cells:
        step = (cell.model, cell.data_source, cell.data_path, tuple(sorted(cell.data_options.items())))
        if step in seen:
            continue
        seen.add(step)
        started = time.perf_counter()
        models = setting_models(cell.model, cell.data_source, cell.data_options, cell.retain_model, cell.device or None,
                                cell.finetune)
        for role, info in models.info.items():
            recall = ", ".join(f"{split} {values['rouge_l_recall']:.2f}"
                               for split, values in (info.get("memorisation") or {}).items())
            yield f"setting {cell.setting}: finetuned {role} model {info['path']} " \
                  f"(greedy ROUGE-L recall of its training answers: {recall})"
        model, tokenizer = load_model(models.target, cell.device or None, cell.dtype or None)
        splits = load_splits(model, tokenizer, cell)
        sizes = ", ".join(f"{name} {len(records)}" for name, records in splits.items())
        yield f"setting {cell.setting}: model {models.target}, data {cell.data_source} ({sizes}) loaded after " \
              f"{time.perf_counter() - started:.1f} s"
        scorer = load_entailment(cell.nli_model, cell.device or None)
        evaluate_cached(model, tokenizer, splits, cell, scorer)
        if models.retain:
            evaluate_retain_model(models.retain, splits, cell, scorer)
        yield f"setting {cell.setting}: unedited{' and retain' if models.retain else ''} model evaluated; " \
              f"ready after {time.perf_counter() - started:.1f} s"
