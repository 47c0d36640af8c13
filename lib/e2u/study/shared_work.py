"""Work that several cells share, planned once per study and done before the cells that need it.

Four kinds of step, each a function of a representative cell, each cached on disk by the code it
calls, so doing a step twice costs only the loads:

* ``model``: the base model is made loadable (the embedded GGUF converted once to safetensors);
* ``finetune``: one finetuned model of a setting that teaches its knowledge (its target, or its retain model),
  one step per model (keyed by what its records depend on), so that the two train side by side and settings that share them (the seeds of
  one data set) wait for the same two steps;
* ``setting``: the setting's models (finetuned and cached where the setting teaches its knowledge),
  its data (the `probe` source asks the model), and the unedited (and retain) model's evaluation;
* ``statistics``: the editors' context templates, and the key second moments C = E[k k^T] of every
  layer any editor cell of the setting rewrites, in one pass per statistics corpus.

A step runs only after every step it needs (`after`); no two steps compute the same thing, so two
workers never compute the same cache entry side by side. The executor starts steps before cells, and
finetuning first: it is the longest chain (a finetuned setting's cells wait for it).
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass

import torch

from e2u.cell.data import load_splits
from e2u.cell.evaluation import evaluate_cached, evaluate_retain_model
from e2u.cell.params import CellParams
from e2u.cell.setting_models import prepare_setting_model, setting_models
from e2u.editing.locate import shared_context_templates
from e2u.editing.stats import layer_moments
from e2u.evaluation.entailment import load_entailment
from e2u.methods import get_method, method_hparams, statistics_layers
from e2u.model.arch import find_arch
from e2u.model.load import load_model
from e2u.model.prompts import with_prompt_format
from e2u.training.finetune_data import FINETUNED_SOURCES, model_identity


@dataclass(frozen=True)
class SharedStep:
    kind: str  # "model" | "finetune" | "setting" | "statistics"
    name: str  # unique in a study: "model <name>", "finetune <role> <setting>", "setting <setting>", "statistics <setting>"
    cells: tuple[CellParams, ...]  # the cells that need this step; the first stands for the others
    after: tuple[str, ...] = ()  # the steps it waits for
    role: str = ""  # a finetune step's model: "target" or "retain"


def _setting_of(cell: CellParams) -> tuple:
    """What a setting's shared work depends on: model, data, finetuning, device, evaluation settings and prompt format."""
    return (cell.model, cell.data_source, cell.data_path, json.dumps(cell.data_options, sort_keys=True),
            cell.retain_model, json.dumps(cell.finetune, sort_keys=True), cell.device, cell.dtype, cell.max_new_tokens,
            cell.batch_size, cell.nli_model, json.dumps(cell.prompt, sort_keys=True))


def locates(method: str) -> bool:
    """Whether `method` needs the setting's context templates and key statistics (`methods.Method.locates`)."""
    return get_method(method).locates


def plan_shared_steps(cells: list[CellParams]) -> list[SharedStep]:
    """The steps these cells share, in an order that respects `after` (models, finetuned models, settings,
    statistics)."""
    models: dict[str, list[CellParams]] = {}
    settings: dict[tuple, list[CellParams]] = {}
    for cell in cells:
        models.setdefault(cell.model, []).append(cell)
        settings.setdefault(_setting_of(cell), []).append(cell)
    steps = [SharedStep("model", f"model {name}", tuple(group)) for name, group in models.items()]
    finetunes: dict[str, SharedStep] = {}
    previous: dict[str, str] = {}  # the last setting step of each edited model
    statistics: dict[str, str] = {}  # the last statistics step of each edited model
    settings_steps = []
    for group in settings.values():
        first = group[0]
        name = f"setting {first.setting}"
        if any(step.name == name for step in settings_steps):  # two data sets under one setting name: keep both
            name = f"{name} #{sum(s.kind == 'setting' for s in settings_steps)}"
        needs, target = [], first.model  # the model the setting's cells edit: its statistics are shared
        for role in ("target", "retain") if first.data_source in FINETUNED_SOURCES else ():
            identity = json.dumps([first.model, first.finetune, role, model_identity(
                first.data_source, first.data_path, first.data_options, role), first.prompt], sort_keys=True)
            target = identity if role == "target" else target
            step = finetunes.get(identity) or SharedStep(
                "finetune", f"finetune {role} {name.removeprefix('setting ')}", (), (f"model {first.model}",), role)
            finetunes[identity] = SharedStep(step.kind, step.name, step.cells + tuple(group), step.after, step.role)
            needs.append(step.name)
        # after the previous setting of the same model: they share what it generates once (the factual probe)
        needs += [previous[target]] if target in previous else []
        settings_steps.append(SharedStep("setting", name, tuple(group), after=tuple(needs) or (f"model {first.model}",)))
        previous[target] = name
        editors = tuple(c for c in group if locates(c.method))
        if editors:  # after the previous statistics step of the same model: its key statistics are these
            step = SharedStep("statistics", name.replace("setting", "statistics", 1), editors,
                              after=(name,) + ((statistics[target],) if target in statistics else ()))
            statistics[target] = step.name
            settings_steps.append(step)
    return steps + list(finetunes.values()) + settings_steps


def step_for_cell(steps: list[SharedStep], cell: CellParams) -> SharedStep:
    """The last step `cell` waits for: its setting's statistics if it locates then edits, else its setting."""
    mine = [s for s in steps if s.kind != "model" and cell in s.cells]
    return mine[-1]


def run_shared_step(step: SharedStep) -> dict:
    """Do one step in this process; returns {"step", "seconds", "lines"} (what it did, for the log)."""
    started = time.perf_counter()
    lines = {"model": _prepare_model, "finetune": _prepare_finetuned, "setting": _prepare_setting,
             "statistics": _prepare_statistics}[step.kind](step)
    _release_memory()  # the worker goes on to run cells in kernels of their own: they need the GPU's memory
    return {"step": step.name, "seconds": round(time.perf_counter() - started, 1), "lines": lines}


def _release_memory() -> None:


    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _prepare_model(step: SharedStep) -> list[str]:

    cell = step.cells[0]
    load_model(cell.model, cell.device or None, cell.dtype or None)
    return [f"model {cell.model} ready"]


def _prepare_finetuned(step: SharedStep) -> list[str]:

    cell = step.cells[0]
    info = prepare_setting_model(cell.model, cell.data_source, cell.data_options, step.role, cell.finetune,
                                 cell.data_path, cell.device or None, cell.prompt)
    return [f"{step.name}: the {step.role} model, {info['data']['records']} records, trained in {info['seconds']} s"]


def _prepare_setting(step: SharedStep) -> list[str]:

    cell, lines = step.cells[0], []
    models = setting_models(cell.model, cell.data_source, cell.data_options, cell.retain_model, cell.device or None,
                            cell.finetune, cell.data_path, cell.prompt)
    for role, info in models.info.items():
        recall = ", ".join(f"{split} {values['rouge_l_recall']:.2f}"
                           for split, values in (info.get("memorisation") or {}).items())
        lines.append(f"setting {cell.setting}: finetuned {role} model {info['path']} "
                     f"(greedy ROUGE-L recall of its training answers: {recall})")
    model, tokenizer = load_model(models.target, cell.device or None, cell.dtype or None)
    with_prompt_format(tokenizer, cell.prompt_format)
    splits = load_splits(model, tokenizer, cell.data_source, cell.data_path or None, cell.data_options,
                         cell.batch_size)
    lines.append(f"setting {cell.setting}: data {cell.data_source} "
                 f"({', '.join(f'{name} {len(records)}' for name, records in splits.items())})")
    scorer = load_entailment(cell.nli_model, cell.device or None)
    evaluate_cached(model, tokenizer, splits, cell.evaluation, scorer)
    if models.retain:
        evaluate_retain_model(models.retain, cell.device or None, cell.dtype or None, splits, cell.evaluation, scorer,
                              cell.prompt_format)
    lines.append(f"setting {cell.setting}: unedited{' and retain' if models.retain else ''} model evaluated")
    return lines


def _prepare_statistics(step: SharedStep) -> list[str]:
    """The union of every editor cell's layers, one pass per statistics corpus (stats.layer_moments caches)."""
    cell = step.cells[0]
    models = setting_models(cell.model, cell.data_source, cell.data_options, cell.retain_model, cell.device or None,
                            cell.finetune, cell.data_path, cell.prompt)
    model, tokenizer = load_model(models.target, cell.device or None, cell.dtype or None)
    with_prompt_format(tokenizer, cell.prompt_format)
    by_corpus: dict[tuple, tuple[object, set[int]]] = {}
    lines = []
    for editor in step.cells:
        hp = method_hparams(editor.method, model, editor.model, editor.hparams)
        templates = shared_context_templates(model, tokenizer, hp)
        line = f"setting {cell.setting}: {len(templates) - 1} context templates (seed {hp.seed})"
        lines += [line] if line not in lines else []
        layers = statistics_layers(editor.method, model, hp)
        if layers:
            corpus = (hp.mom2_corpus, hp.mom2_corpus_texts, hp.mom2_n_tokens, hp.mom2_max_length, hp.mom2_dtype, hp.seed)
            by_corpus.setdefault(corpus, (hp, set()))[1].update(layers)
    for hp, layers in by_corpus.values():
        layer_moments(model, tokenizer, find_arch(model), sorted(layers), hp)
        lines.append(f"setting {cell.setting}: key statistics of layers {sorted(layers)} ({hp.mom2_corpus})")
    return lines
