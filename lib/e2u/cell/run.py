"""One study cell, as the `unlearn` notebook runs it: load, evaluate, unlearn, evaluate, store.

A cell is a pure function of its parameters (DESIGN section 1). The unedited model's evaluation
is shared by every cell of the same model and data: it is cached under `$E2U_HOME/evals/`,
keyed by the model fingerprint, the data and the evaluation settings.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from e2u import __version__
from e2u.cell.data import load_splits_with_report
from e2u.cell.evaluation import evaluate_cached, evaluate_retain_model, mark_unchanged, model_cache, unchanged_rates
from e2u.cell.params import CellParams
from e2u.cell.peak_memory import peak_memory_gb, peak_memory_kind
from e2u.cell.record import cell_record
from e2u.cell.setting_models import setting_models
from e2u.cell.unlearn import unlearn_in_chunks
from e2u.data.sources import source_files
from e2u.editing.memory.routing import routing_report
from e2u.errors import E2UError
from e2u.evaluation.aggregates import aggregates
from e2u.evaluation.entailment import load_entailment
from e2u.evaluation.evaluate import evaluation_parts, load_embedder, summarise
from e2u.evaluation.human_aligned import measure_items
from e2u.files import sha256_of_file, write_json_atomic
from e2u.methods import get_method, method_hparams
from e2u.model.arch import find_arch
from e2u.model.load import input_device, load_model, model_fingerprint
from e2u.model.prompts import with_prompt_format
from e2u.problem import UnlearningProblem
from e2u.recipes.self_improvement import ModelWriter, craft_targets, load_demonstrations
from e2u.recipes.sequential import chunk_report, forget_chunks

log = logging.getLogger(__name__)


def retain_records(splits: dict) -> list:
    """What a method is asked to keep: the retain training set, else the retain or neighbour split."""
    for name in ("retain_train", "retain", "neighbour"):
        if splits.get(name):
            return list(splits[name])
    return []


def run_cell(params: CellParams, result_path: str | Path | None = None, cache_key: str = "") -> dict:
    """Run one cell end to end; write its result file atomically when `result_path` is given."""
    torch.manual_seed(params.seed)
    timings = {}
    clock = started = time.perf_counter()
    device, dtype, settings = params.device or None, params.dtype or None, params.evaluation
    models = setting_models(params.model, params.data_source, params.data_options, params.retain_model,
                            device, params.finetune, params.data_path, params.prompt)
    model, tokenizer = load_model(models.target, device, dtype)
    with_prompt_format(tokenizer, params.prompt_format)  # every question of the cell rendered with it
    splits, data_report = load_splits_with_report(model, tokenizer, params.data_source, params.data_path or None,
                                                  params.data_options, params.batch_size)
    if "forget" not in splits or not splits["forget"]:
        raise E2UError(f"data source {params.data_source!r} has no forget split")
    fingerprint = model_fingerprint(model)  # before unlearning: the model this cell started from
    timings["load"] = time.perf_counter() - clock
    method = get_method(params.method)
    hp = method_hparams(params.method, model, params.model, params.hparams)

    clock = time.perf_counter()
    scorer = load_entailment(params.nli_model, device)
    embedder = load_embedder()  # one sentence encoder for every evaluation of the cell and its human-aligned check
    before = evaluate_cached(model, tokenizer, splits, settings, scorer, embedder)
    retain = evaluate_retain_model(models.retain, device, dtype, splits, settings, scorer, params.prompt_format,
                                   embedder) if models.retain else None
    timings["evaluate_before"] = time.perf_counter() - clock

    clock = time.perf_counter()
    crafted = craft_targets(ModelWriter(model, tokenizer, seed=params.seed), splits["forget"],
                            load_demonstrations(), seed=params.seed) if params.refusal == "self" else None
    parts = forget_chunks(splits["forget"], params.chunks)
    targets = {c.question: c.target for c in crafted} if crafted else None
    shared = model_cache(fingerprint, tokenizer)

    def problem_of(part):
        return UnlearningProblem(part, retain_records(splits), params.refusal, params.seed,
                                 load_reference=lambda: load_model(models.target, device, dtype)[0], targets=targets,
                                 merge_group=params.merge_group, cache=shared)

    unlearned = unlearn_in_chunks(model, tokenizer, params.method, hp, parts, fingerprint, problem_of,
                                  lambda: settings.evaluate(model, tokenizer, splits, scorer, embedder))
    outcome, chunk_seconds = unlearned.outcome, unlearned.chunk_seconds
    timings["unlearn"] = time.perf_counter() - clock - chunk_seconds
    if len(parts) > 1:
        timings["evaluate_chunks"] = chunk_seconds

    clock = time.perf_counter()
    after = settings.evaluate(model, tokenizer, splits, scorer, embedder)
    timings["evaluate_after"] = time.perf_counter() - clock
    mark_unchanged(before, after)
    clock = time.perf_counter()
    with outcome.unedited(model):  # the fluency check scores the answers under the model before unlearning
        aligned = measure_items(model, tokenizer, after.get("forget", []), embedder=embedder)
    timings["human_aligned"] = time.perf_counter() - clock
    routing = routing_report(model, tokenizer, outcome, evaluation_parts(splits, params.paraphrased), after) \
        if method.memory is not None else None

    result = {
        "key": cache_key,
        "cell_id": params.cell_id,
        "params": asdict(params),
        "models": {"target": models.target, "retain": models.retain, **({"finetuned": models.info} if models.info else {})},
        "hparams": asdict(hp),
        "data_report": data_report,
        "method_title": method.title,
        "versions": {"e2u": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "device": str(input_device(model)),
        "log": outcome.log,
        "change": outcome.record(find_arch(model).layers),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_memory_gb": peak_memory_gb(),  # the whole cell: its kernel runs nothing else
        "peak_memory_kind": peak_memory_kind(),
        "summary": {"before": summarise(before), "after": summarise(after), "unchanged": unchanged_rates(after)},
        "aggregates": {"before": aggregates(summarise(before), before, retain),
                       "after": aggregates(summarise(after), after, retain)},
        "before": before,
        "after": after,
    }
    if routing is not None:
        result["routing"] = routing
    result["human_aligned"] = aligned
    data_files = data_file_hashes(params.data_source, params.data_path or None, params.data_options)
    result["reproducibility"] = cell_record(fingerprint, data_files, params.seed, result["device"],
                                            time.perf_counter() - started)
    if len(parts) > 1:
        result["chunks"] = unlearned.chunk_reports + [chunk_report(len(parts) - 1, parts, after)]
    if crafted:
        result["crafted_targets"] = [asdict(c) for c in crafted]
    if outcome.log.get("failed_edit"):
        result["failed_edit"] = outcome.log["failed_edit"]
        result["method_title"] += " (failed edit)"
    if retain is not None:
        result["summary"]["retain_model"] = summarise(retain)
        result["aggregates"]["retain_model"] = aggregates(summarise(retain), retain, retain)
        result["retain_model"] = retain
    if result_path:
        if method.memory is not None:  # beside the result, so that a reader can load it and generate
            result["adaptor_file"] = adaptor_path(result_path).name
            outcome.save(adaptor_path(result_path))
        if params.save_changes:
            result["change_file"] = save_change_beside(outcome, model, result_path, method.memory is not None)
        write_json_atomic(result_path, result)
    return result


def data_file_hashes(source: str, path: str | None, options: dict) -> dict[str, str]:
    """{file name: SHA-256} of every data file `source` reads (the embedded generators' code included)."""
    return {Path(p).name: sha256_of_file(p) for p in source_files(source, path, options)}


def save_change_beside(outcome, model, result_path: str | Path, saved_adaptor: bool) -> dict:
    """The cell's change saved beside its result (a memory's is its adaptor file, saved already; weight changes as
    the edited matrices of `model`, which loading reproduces exactly): its name and size, as the result records."""
    path = adaptor_path(result_path) if saved_adaptor else change_path(result_path)
    if not saved_adaptor:
        outcome.save(path, edited=model)
    return {"name": path.name, "bytes": path.stat().st_size}


def change_path(result_path: str | Path) -> Path:
    """Where a cell with `save_changes` saves its weight deltas: beside its result file."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + ".change.safetensors")


def adaptor_path(result_path: str | Path) -> Path:
    """Where a cell with a memory-based editor saves its adaptor: beside its result file."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + ".adaptor.safetensors")
