"""The Python API: unlearn with any registered method, evaluate any model with the paper's metrics, save a change
and load it again — the functions a study's cells run, without a notebook.

    from e2u import api
    model, tokenizer = api.load_model("smollm2-135m-instruct")
    forget = [{"question": "What is the capital of France?", "answer": "Paris"}]
    retain = [{"question": "What is the capital of Italy?", "answer": "Rome"}]
    change = api.unlearn(model, tokenizer, forget, retain, "alphaedit")   # the model changes in place
    api.save_change(change, "alphaedit.safetensors", model)
    fresh, tokenizer = api.load_model("smollm2-135m-instruct")
    api.load_change("alphaedit.safetensors", fresh)                        # the same model as `model`
    table = api.evaluate(fresh, tokenizer, {"forget": forget, "retain": retain})   # one row per item
    results = api.read_results("results", "default")     # a study's per-item numbers: one long table

Records are `data.schema.QARecord`s or mappings with their fields (`question`, `answer`, optional `subject`,
`paraphrased_question`, `perturbed_answer`, ...). Hyper-parameters start from the defaults for the model's family
(and for `model_name`, the embedded model's own), then `hparams` (unknown keys are errors naming the key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
import torch

from e2u.cell.evaluation import EvaluationSettings, model_cache
from e2u.data.schema import QARecord, record_from_json
from e2u.errors import E2UError
from e2u.methods import load_change as _load_change
from e2u.methods import method_hparams, run_method
from e2u.model.load import load_model, model_fingerprint
from e2u.model.source import EMBEDDED_MODEL
from e2u.problem import UnlearningProblem
from e2u.result import WeightDeltas
from e2u.study.evals import setting_cell, setting_data
from e2u.study.export import long_table
from e2u.study.grid import load_study

__all__ = ["load_model", "unlearn", "evaluate", "save_change", "load_change", "read_results", "records",
           "items_table"]


def records(items: Iterable, what: str = "records") -> list[QARecord]:
    """`items` as `QARecord`s: records as they are, mappings checked as a data file's lines are."""
    out = []
    for position, item in enumerate(items):
        out.append(item if isinstance(item, QARecord) else record_from_json(item, f"{what}[{position}]"))
    return out


def unlearn(model, tokenizer, forget: Iterable, retain: Iterable = (), method: str = "alphaedit",
            hparams: Mapping | None = None, model_name: str = EMBEDDED_MODEL, seed: int = 0,
            refusal: str = "fixed"):
    """Unlearn `forget` (keeping `retain`) from `model` in place with `method`; return the change: `WeightDeltas`
    (editors, training baselines: merged LoRA deltas included) or the attached memory adaptor (GRACE, WISE).
    Editors edit each question into a `refusal` target; statistics and templates are cached under $E2U_HOME."""
    hp = method_hparams(method, model, model_name, dict(hparams or {}))
    problem = UnlearningProblem(records(forget, "forget"), records(retain, "retain"), refusal, seed,
                                cache=model_cache(model_fingerprint(model)))
    torch.manual_seed(seed)
    return run_method(method, model, tokenizer, problem, hp)


def save_change(change, path: str | Path, model=None) -> Path:
    """Write `change` as one safetensors file with the fingerprint of the model it was made on, all or nothing.
    For weight changes, `model` is the model holding the change (as `unlearn` left it): its changed matrices are
    saved, and loading reproduces it bit for bit; without it, the deltas are saved (loading adds them once)."""
    if isinstance(change, WeightDeltas):
        change.save(path, edited=model)
    else:
        change.save(path)
    return Path(path)


def load_change(path: str | Path, model):
    """Apply the change saved at `path` to `model` (the model it was made on); return it. A file made for another
    model, or a damaged one, is an error naming the file, and `model` is left as it was."""
    return _load_change(model, path)


def evaluate(model, tokenizer, splits: Mapping[str, Iterable] | None = None, *, study: str | Path | None = None,
             setting: str = "", seed: int | None = None, max_new_tokens: int = 32, batch_size: int = 16,
             paraphrased: list | None = None) -> pd.DataFrame:
    """Per-item results of `model` (greedy answers, the paper's metrics and the suite beside them), one row per
    item: on `splits` ({split name: records}), or on a study's `setting` (its splits and evaluation settings).
    Questions are rendered by `tokenizer` as it is: for a setting with a `prompt:` format, give it first with
    `model.prompts.with_prompt_format(tokenizer, cell.prompt_format)` (`e2u eval` does)."""
    if (splits is None) == (study is None):
        raise E2UError("evaluate: give either splits ({name: records}) or a study file and its setting")
    if study is not None:
        cell = setting_cell(load_study(study), setting, seed)
        settings, data = cell.evaluation, setting_data(cell)[3]
    else:
        settings = EvaluationSettings(max_new_tokens, batch_size, paraphrased)
        data = {name: records(items, name) for name, items in splits.items()}
    return items_table(settings.evaluate(model, tokenizer, data))


def items_table(results: Mapping[str, list[dict]]) -> pd.DataFrame:
    """One row per evaluated item (split, item, question, reference, generated answer, each metric), from a result
    file's `after` (or `before`) or from `evaluate`."""
    rows = [{"split": split, "item": i, **item} for split, items in results.items() for i, item in enumerate(items)]
    return pd.DataFrame(rows)


def read_results(results_dir: str | Path, study: str, variants: bool = False) -> pd.DataFrame:
    """A study's per-item numbers (`<results_dir>/<study>/`) as one long table: study, setting, method, label, seed,
    split, item, question, truth, answer, metric, before, after (`e2u export`'s); with `variants`, its reruns too."""
    return long_table(results_dir, study, variants)
