"""`e2u eval`: a saved change, a local model directory or a hub id, evaluated on one setting of a study with the
evaluation a cell runs after unlearning (`cell.evaluation.EvaluationSettings`: the paper's metrics and the suite
beside them), on the same splits as the setting's cells.

The result is written beside the study's cells, `<results>/<study>/<setting>/evals/<name>.json`, never over a
cell's own result file (those are `<setting>/<cell>.json`); the setting chapter lists it apart from the cells.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict
from pathlib import Path

import torch

from e2u import __version__
from e2u.cell.data import load_splits_with_report
from e2u.cell.params import CellParams
from e2u.cell.setting_models import setting_models
from e2u.errors import E2UError
from e2u.evaluation.aggregates import aggregates
from e2u.evaluation.entailment import load_entailment
from e2u.evaluation.evaluate import summarise
from e2u.files import write_json_atomic
from e2u.methods import load_change
from e2u.model.load import load_model, model_fingerprint
from e2u.model.prompts import with_prompt_format
from e2u.study.grid import Study

EVALS = "evals"  # the folder of a setting's evaluations, beside its cells' result files


def setting_cell(study: Study, setting: str, seed: int | None = None) -> CellParams:
    """The first cell of `setting` (with `seed`, where given): its data, model and evaluation are the setting's."""
    cells = [c for c in study.cells if c.setting == setting]
    if not cells:
        raise E2UError(f"study file {study.source}: no setting {setting!r}; expected one of "
                       f"{sorted({c.setting for c in study.cells})}")
    seeded = [c for c in cells if seed is None or c.seed == seed]
    if not seeded:
        raise E2UError(f"study file {study.source}: setting {setting!r} has no cell with seed {seed}; its seeds are "
                       f"{sorted({c.seed for c in cells})}")
    return seeded[0]


def setting_data(cell: CellParams) -> tuple[str, torch.nn.Module, object, dict, dict]:
    """(base model name, base model, tokenizer, splits, data report): what the cell starts from, loaded as it does
    (its questions rendered with the setting's prompt format)."""
    device, dtype = cell.device or None, cell.dtype or None
    target = setting_models(cell.model, cell.data_source, cell.data_options, cell.retain_model, device, cell.finetune,
                            cell.data_path, cell.prompt).target
    model, tokenizer = load_model(target, device, dtype)
    with_prompt_format(tokenizer, cell.prompt_format)
    splits, report = load_splits_with_report(model, tokenizer, cell.data_source, cell.data_path or None,
                                             cell.data_options, cell.batch_size)
    return target, model, tokenizer, splits, report


def eval_name(change: str | Path | None, model: str | None) -> str:
    """A file name for what is evaluated: the change file's name without its suffixes, or the model's name."""
    if change:
        raw = Path(change).name.split(".")[0]
    elif Path(model).is_dir():
        raw = Path(model).resolve().name
    else:
        raw = str(model).replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw) or "model"


def eval_path(results_dir: str | Path, study: str, setting: str, name: str) -> Path:
    return Path(results_dir) / study / setting / EVALS / f"{name}.json"


def _evaluated(path: Path) -> dict:
    """What an earlier evaluation file says it evaluated ({} when it cannot be read)."""
    try:
        return json.loads(path.read_text()).get("evaluated", {})
    except (OSError, ValueError, AttributeError):
        return {}


def evaluate_on_setting(study: Study, setting: str, results_dir: str | Path, change: str | Path | None = None,
                        model: str | None = None, seed: int | None = None, name: str = "") -> tuple[Path, dict]:
    """Evaluate `change` (applied to the setting's model) or `model` on the setting's splits; write and return the
    result (path, content)."""
    if (change is None) == (model is None):
        raise E2UError("eval: give either a change file (--change) or a model (--model), not both or neither")
    if name and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise E2UError(f"eval: --name must be letters, digits, '.', '-' or '_', got {name!r}")
    cell = setting_cell(study, setting, seed)
    name = name or eval_name(change, model)
    path = eval_path(results_dir, study.name, setting, name)
    source = {"change": str(Path(change).resolve())} if change is not None else {"model": model}
    if path.is_file() and {k: v for k, v in _evaluated(path).items() if k in source} != source:
        raise E2UError(f"eval: {path} holds the evaluation of something else ({_evaluated(path)}); give this one "
                       "another --name")
    target, base, tokenizer, splits, report = setting_data(cell)
    if change is not None:
        evaluated, what = base, {**source, "base_model": target}
        load_change(base, change)  # refuses a change made for another model, naming both fingerprints
    else:
        evaluated, tokenizer = load_model(model, cell.device or None, cell.dtype or None)
        with_prompt_format(tokenizer, cell.prompt_format)
        what = source
    settings = cell.evaluation
    after = settings.evaluate(evaluated, tokenizer, splits, load_entailment(cell.nli_model, cell.device or None))
    result = {"kind": "eval", "name": name, "study": study.name, "setting": setting, "evaluated": what,
              "model_fingerprint": model_fingerprint(evaluated), "data_cell": cell.cell_id,
              "data": {"source": cell.data_source, "path": cell.data_path, "options": cell.data_options},
              "evaluation": asdict(settings), "data_report": report,
              "versions": {"e2u": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "summary": {"after": summarise(after)}, "aggregates": {"after": aggregates(summarise(after), after)},
              "after": after}
    write_json_atomic(path, result)
    return path, result
