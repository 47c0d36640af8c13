"""One study cell, as the `unlearn` notebook runs it: load, evaluate, unlearn, evaluate, store.

A cell is a pure function of its parameters (DESIGN section 1). The unedited model's evaluation
is shared by every cell of the same model and data: it is cached under `$E2U_HOME/evals/`,
keyed by the model fingerprint, the data and the evaluation settings.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import __version__
from .cell_data import load_splits_with_report
from .data.sources import source_options
from .errors import E2UError
from .aggregates import aggregates
from .entailment import load_entailment
from .human_aligned import measure_items
from .evaluate import evaluate_dataset, evaluation_parts, summarise
from .editing.routing import FailedEdit, routing_report
from . import cache
from .arch import find_arch
from .files import sha256_of_json, write_json_atomic
from .json_fields import from_json_object
from .peak_memory import peak_memory_gb, peak_memory_kind
from .problem import UnlearningProblem
from .reproducibility import cell_record
from .recipes.self_improvement import craft_targets, greedy_continuations, load_demonstrations
from .provenance import code_digest, evaluation_code_files
from .methods import get_method, method_hparams, run_method
from .models import input_device, load_model, model_fingerprint, statistics_of
from .sequential import chunk_report, forget_chunks
from .setting_models import setting_models

log = logging.getLogger(__name__)


@dataclass
class CellParams:
    """Everything a cell depends on. Notebook parameters are validated into this."""

    model: str = "smollm2-135m-instruct"
    setting: str = "pretrained"
    data_source: str = "mini"
    data_path: str = ""
    data_options: dict = field(default_factory=dict)
    retain_model: str = ""  # the retain model for forget quality (a `tofu` setting); `fictional` trains its own
    finetune: dict = field(default_factory=dict)  # `fictional`: finetuning hyper-parameters (finetune.FinetuneHParams)
    method: str = "rome"
    label: str = ""
    hparams: dict = field(default_factory=dict)
    refusal: str = "fixed"  # fixed | sampled (data.refusals) | self (recipes.self_improvement)
    merge_group: int = 0  # > 0: query merging, that many same-subject forget questions per edit request
    chunks: int = 1  # > 1: sequential unlearning, the forget set in that many chunks, evaluated after each
    seed: int = 0
    max_new_tokens: int = 32
    batch_size: int = 16
    paraphrased: list | None = None  # splits also asked in paraphrase (None: every split that has paraphrases)
    device: str = ""
    dtype: str = ""
    nli_model: str = ""  # a local NLI model directory (or cached hub id): entailment is computed with it

    def __post_init__(self) -> None:
        get_method(self.method)
        self.hparams = _mapping(self.hparams, "hparams")
        self.finetune = _mapping(self.finetune, "finetune")
        self.data_options = source_options(self.data_source, _mapping(self.data_options, "data_options"))
        for name in ("seed", "max_new_tokens", "batch_size", "merge_group", "chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise E2UError(f"parameter {name}: expected a non-negative integer, got {value!r}")
        for name in ("model", "setting", "data_source", "data_path", "retain_model", "label", "device", "dtype",
                     "nli_model"):
            if not isinstance(getattr(self, name), str):
                raise E2UError(f"parameter {name}: expected a string, got {getattr(self, name)!r}")
        if self.paraphrased is not None and (not isinstance(self.paraphrased, list)
                                             or not all(isinstance(n, str) and n for n in self.paraphrased)):
            raise E2UError(f"parameter paraphrased: expected a list of split names such as ['forget'], or null for "
                           f"every split, got {self.paraphrased!r}")
        if self.refusal not in ("fixed", "sampled", "self"):
            raise E2UError(f"parameter refusal: expected 'fixed', 'sampled' or 'self', got {self.refusal!r}")
        if self.chunks < 1:
            raise E2UError(f"parameter chunks: expected an integer >= 1, got {self.chunks!r}")
        self.label = self.label or self.method

    @classmethod
    def from_json(cls, text: str) -> "CellParams":
        """The cell as the unlearn notebook receives it: one JSON object (unknown fields are errors)."""
        return from_json_object(cls, text, "parameter cell")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def title(self) -> str:
        """The chapter title of this cell's notebook."""
        return (f"{get_method(self.method).title}: {self.setting} knowledge ({self.data_source}), "
                f"{self.label}, seed {self.seed}")

    @property
    def cell_id(self) -> str:
        return f"{self.label}-seed{self.seed}"


def _mapping(value, name: str) -> dict:
    """A mapping parameter, given as a mapping or as the JSON text of one."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise E2UError(f"parameter {name}: expected a JSON object, got {value!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise E2UError(f"parameter {name}: expected a mapping, got {type(value).__name__}")
    return value


def _mark_unchanged(before: dict, after: dict) -> None:
    """Flag every after-item whose greedy answer equals the unedited model's, word for word."""
    for split, items in after.items():
        for item, old in zip(items, before.get(split, [])):
            item["unchanged"] = " ".join(item["generated"].split()) == " ".join(old["generated"].split())


def _unchanged_rates(after: dict) -> dict:
    return {split: sum(i["unchanged"] for i in items) / len(items) for split, items in after.items() if items}


def splits_digest(splits: dict) -> str:
    """Hash of every record of every split: what an evaluation of this data depends on."""
    return sha256_of_json({s: [asdict(r) for r in rs] for s, rs in splits.items()})


def evaluate_cached(model, tokenizer, splits, params: CellParams, entailment=None) -> dict:
    """Evaluation of the unedited model, computed once per (model, data, evaluation settings, code)."""
    key = {"model": model_fingerprint(model), "data": splits_digest(splits), "max_new_tokens": params.max_new_tokens,
           "batch_size": params.batch_size, "nli_model": params.nli_model, "version": __version__,
           **({"paraphrased": params.paraphrased} if params.paraphrased is not None else {}),
           "code": code_digest(evaluation_code_files())}
    return cache.cached_json(cache.entry_path("evals", key), key,
                             lambda: evaluate_dataset(model, tokenizer, splits, params.max_new_tokens, params.batch_size,
                                                      entailment=entailment, paraphrased=params.paraphrased))


def model_cache(fingerprint: str):
    """The on-disk cache a cell's method shares with every cell of the same model (`UnlearningProblem.cache`):
    its entries are keyed by the unedited model's fingerprint, the library version and the evaluation code."""
    code = code_digest(evaluation_code_files())

    def cached(kind: str, key: dict, compute):
        full = {"model": fingerprint, **key, "version": __version__, "code": code}
        return cache.cached_json(cache.entry_path(kind, full), full, compute)

    return cached


def evaluate_retain_model(path: str, splits: dict, params: CellParams, entailment=None) -> dict:
    """Per-item results of the retain model on the cell's data (cached like any unedited model's)."""
    model, tokenizer = load_model(path, params.device or None, params.dtype or None)
    return evaluate_cached(model, tokenizer, splits, params, entailment)


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
    models = setting_models(params.model, params.data_source, params.data_options, params.retain_model,
                            params.device or None, params.finetune, params.data_path)
    model, tokenizer = load_model(models.target, params.device or None, params.dtype or None)
    splits, data_report = load_splits_with_report(model, tokenizer, params)
    if "forget" not in splits or not splits["forget"]:
        raise E2UError(f"data source {params.data_source!r} has no forget split")
    fingerprint = model_fingerprint(model)  # before unlearning: the model this cell started from
    timings["load"] = time.perf_counter() - clock
    method = get_method(params.method)
    hp = method_hparams(params.method, model, params.model, params.hparams)

    clock = time.perf_counter()
    scorer = load_entailment(params.nli_model, params.device or None)
    before = evaluate_cached(model, tokenizer, splits, params, scorer)
    retain = evaluate_retain_model(models.retain, splits, params, scorer) if models.retain else None
    timings["evaluate_before"] = time.perf_counter() - clock

    clock = time.perf_counter()
    crafted = craft_targets(greedy_continuations(model, tokenizer), tokenizer, splits["forget"],
                            load_demonstrations(), seed=params.seed) if params.refusal == "self" else None
    parts = forget_chunks(splits["forget"], params.chunks)
    outcome, chunk_reports, chunk_seconds = None, [], 0.0
    for number, part in enumerate(parts):
        problem = UnlearningProblem(part, retain_records(splits), params.refusal, params.seed,
                                    load_reference=lambda: load_model(models.target, params.device or None,
                                                                      params.dtype or None)[0],
                                    targets={c.question: c.target for c in crafted} if crafted else None,
                                    merge_group=params.merge_group, cache=model_cache(fingerprint))
        try:
            with statistics_of(model, fingerprint):  # every chunk edits with the unedited model's statistics
                changed = run_method(params.method, model, tokenizer, problem, hp, previous=outcome)
            # after an earlier chunk: weight changes sum (what `unedited` reverts), a memory goes on
            outcome = changed if outcome is None else outcome.followed_by(changed)
        except FailedEdit as failed:  # measured anyway, with the memory attached, and flagged in the result
            log.warning("%s", failed)
            outcome = failed.adaptor.reattached(model)
        if number < len(parts) - 1:  # the last chunk is evaluated as every cell is, below
            evaluated = time.perf_counter()
            chunk_reports.append(chunk_report(number, parts, evaluate_dataset(
                model, tokenizer, splits, params.max_new_tokens, params.batch_size, entailment=scorer,
                paraphrased=params.paraphrased)))
            chunk_seconds += time.perf_counter() - evaluated
    timings["unlearn"] = time.perf_counter() - clock - chunk_seconds
    if len(parts) > 1:
        timings["evaluate_chunks"] = chunk_seconds

    clock = time.perf_counter()
    after = evaluate_dataset(model, tokenizer, splits, params.max_new_tokens, params.batch_size, entailment=scorer,
                             paraphrased=params.paraphrased)
    timings["evaluate_after"] = time.perf_counter() - clock
    _mark_unchanged(before, after)
    clock = time.perf_counter()
    with outcome.unedited(model):  # the fluency check scores the answers under the model before unlearning
        aligned = measure_items(model, tokenizer, after.get("forget", []))
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
        "method_title": get_method(params.method).title,
        "versions": {"e2u": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "device": str(input_device(model)),
        "log": outcome.log,
        "change": outcome.record(find_arch(model).layers),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_memory_gb": peak_memory_gb(),  # the whole cell: its kernel runs nothing else
        "peak_memory_kind": peak_memory_kind(),
        "summary": {"before": summarise(before), "after": summarise(after), "unchanged": _unchanged_rates(after)},
        "aggregates": {"before": aggregates(summarise(before), before, retain),
                       "after": aggregates(summarise(after), after, retain)},
        "before": before,
        "after": after,
    }
    if routing is not None:
        result["routing"] = routing
    result["human_aligned"] = aligned
    result["reproducibility"] = cell_record(fingerprint, data_file_hashes(params), params.seed, result["device"],
                                            time.perf_counter() - started)
    if len(parts) > 1:
        result["chunks"] = chunk_reports + [chunk_report(len(parts) - 1, parts, after)]
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
        write_json_atomic(result_path, result)
    return result


def data_file_hashes(params: CellParams) -> dict[str, str]:
    """{file name: SHA-256} of every data file the cell's source reads (the embedded generators' code included)."""
    from .data.sources import source_files
    from .files import sha256_of_file

    return {Path(p).name: sha256_of_file(p)
            for p in source_files(params.data_source, params.data_path or None, params.data_options)}


def adaptor_path(result_path: str | Path) -> Path:
    """Where a cell with a memory-based editor saves its adaptor: beside its result file."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + ".adaptor.safetensors")
