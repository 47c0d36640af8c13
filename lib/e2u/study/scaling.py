"""How a method's cost grows with the number of forget questions (the cost chapter's scaling figure).

One representative per method family — `rome` (sequential locate-then-edit: one edit per question),
`memit` (batch editing: one solve for all questions), `gradient_ascent` (the training baselines) —
is run on the study's model with the first n forget questions of the `fictional` authors, for each n
in `n_forget`. Cost depends on sizes, not on what the model knows, so the model is not finetuned.

A study file asks for it with an optional mapping (absent: no scaling points):

    scaling: {methods: [rome, memit, gradient_ascent], n_forget: [3, 6, 12]}   # both optional

Each point is measured in a fresh Python process (`measure_in_subprocess`), so that its peak memory
is its own; what every edit of the model shares (context templates, key second moments) is computed
and cached beforehand in another process (`warm_shared_work`), as the study's statistics step does for
its cells, so the time measured is the cost of the questions, not of the one-off statistics. A point's
file carries its key; a file with another key, or one that cannot be read, is not a measurement
(`is_measured`).

    python -m e2u.study.scaling warm '<point JSON>'
    python -m e2u.study.scaling measure '<point JSON>' <result path>
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from e2u import __version__
from e2u.cell.evaluation import model_cache
from e2u.cell.json_fields import from_json_object
from e2u.cell.peak_memory import peak_memory_gb, peak_memory_kind
from e2u.cell.run import retain_records
from e2u.data.sources import load_source
from e2u.editing.locate import shared_context_templates
from e2u.editing.stats import layer_moments
from e2u.errors import E2UError
from e2u.files import sha256_of_json, write_json_atomic
from e2u.methods import get_method, method_code_files, method_hparams, run_method, statistics_layers
from e2u.model.arch import find_arch
from e2u.model.load import input_device, load_model, model_fingerprint
from e2u.problem import UnlearningProblem
from e2u.provenance import code_digest
from e2u.study.shared_work import locates

DEFAULT_METHODS = ("rome", "memit", "gradient_ascent")
# The sizes. Measured at n = 10 on 2 CPU cores (one point per core): ROME 61-79 s, gradient ascent 91 s,
# MEMIT 236-303 s; the cost grows about linearly, so the default grid is about 45 CPU-minutes.
DEFAULT_N_FORGET = (10, 20, 40)
FAMILIES = {"rome": "sequential editing", "memit": "batch editing", "alphaedit": "batch editing",
            "gradient_ascent": "training"}
QUESTIONS_PER_AUTHOR = 20  # data.fictional
FORGET_PERCENT = 10  # TOFU's forget10: one author in ten is forgotten
_SCALING_KEYS = frozenset({"methods", "n_forget"})
SCALING_FOLDER = "scaling"  # <results>/<study>/scaling/: not a setting's folder of cell results


def fictional_options(n_forget: int) -> dict:
    """`fictional` source options with at least `n_forget` forget questions: 10% of the authors are
    forgotten, 20 questions each, so 20 authors (the fewest used) give 40."""
    forget_authors = max(2, -(-n_forget // QUESTIONS_PER_AUTHOR))
    return {"seed": 0, "n_authors": forget_authors * 100 // FORGET_PERCENT, "forget_percent": FORGET_PERCENT,
            "retain_eval": 20}


@dataclass(frozen=True)
class ScalingPoint:
    """One measurement: `method` on the first `n_forget` forget questions, on `model`."""
    model: str
    method: str
    n_forget: int
    data_options: dict = field(default_factory=dict)  # the `fictional` source's options
    seed: int = 0
    hparams: dict = field(default_factory=dict)  # the study's overrides for this method (as its cells run)
    device: str = ""
    dtype: str = ""

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        """Hash of the point, the e2u version and the code the measurement runs (a cell's code + this file)."""

        files = sorted(set(method_code_files(self.method)) | {Path(__file__).resolve()})
        return sha256_of_json({"point": asdict(self), "e2u": __version__, "lib": code_digest(files)})[:24]

    @property
    def file_name(self) -> str:
        return f"{self.method}-n{self.n_forget}-seed{self.seed}.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ScalingPoint":
        return from_json_object(cls, text, "scaling point")


def scaling_dir(results_dir: str | Path, study_name: str) -> Path:
    """Where a study's scaling files live: `<results>/<study>/scaling/`."""
    return Path(results_dir) / study_name / SCALING_FOLDER


def scaling_points(spec: dict, model: str, where: str | Path) -> list[ScalingPoint]:
    """The points a parsed study file asks for in its optional `scaling:` mapping (none when absent).

    `spec` is the whole study mapping: a point runs with the hyper-parameters of the study's first
    `methods` entry of the same name (as that method's cells do) and the study's first seed.
    """
    raw = spec.get("scaling")
    if raw is None or raw is False:
        return []
    where = f"study file {where}: field 'scaling'"
    if not isinstance(raw, dict):
        raise E2UError(f"{where}: expected a mapping with optional 'methods' and 'n_forget' (or false), "
                       f"got {type(raw).__name__}")
    unknown = sorted(set(raw) - _SCALING_KEYS)
    if unknown:
        raise E2UError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_SCALING_KEYS)}")
    methods = raw.get("methods", list(DEFAULT_METHODS))
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise E2UError(f"{where}.methods: expected a non-empty list of method names, got {methods!r}")
    for name in methods:
        try:
            get_method(name)
        except E2UError as exc:
            raise E2UError(f"{where}.methods: {exc}") from None
    if len(set(methods)) != len(methods):
        raise E2UError(f"{where}.methods: a method appears twice in {methods}")
    sizes = raw.get("n_forget", list(DEFAULT_N_FORGET))
    limit = 400 * QUESTIONS_PER_AUTHOR * FORGET_PERCENT // 100  # data.fictional.MAX_AUTHORS
    if (not isinstance(sizes, list) or not sizes or len(set(sizes)) != len(sizes)
            or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= limit for n in sizes)):
        raise E2UError(f"{where}.n_forget: expected a non-empty list of distinct integers from 1 to {limit}, "
                       f"got {sizes!r}")
    seeds = spec.get("seeds") or [0]
    return [ScalingPoint(model=model, method=name, n_forget=n, data_options=fictional_options(n), seed=seeds[0],
                         hparams=_study_hparams(spec, name), device=spec.get("device", "") or "",
                         dtype=spec.get("dtype", "") or "")
            for name in methods for n in sorted(sizes)]


def _study_hparams(spec: dict, method: str) -> dict:
    for entry in spec.get("methods") or []:
        if isinstance(entry, dict) and entry.get("name") == method:
            return dict(entry.get("hparams") or {})
    return {}


def _loader(point: ScalingPoint) -> Callable:

    return lambda: load_model(point.model, point.device or None, point.dtype or None)


def _forget_and_retain(point: ScalingPoint) -> tuple[list, list]:

    splits = load_source("fictional", None, point.data_options)
    if len(splits["forget"]) < point.n_forget:
        raise E2UError(f"scaling point {point.file_name}: the fictional options {point.data_options} give "
                       f"{len(splits['forget'])} forget questions, fewer than {point.n_forget}")
    return list(splits["forget"][: point.n_forget]), retain_records(splits)


def warm_shared_work(point: ScalingPoint, load: Callable | None = None) -> float:
    """Compute (or find cached) what every edit of this model shares — the editors' context templates and
    the key second moments their layers read — as the study's statistics step does; the seconds it took.

    Done before the point is timed, in another process, so it enters neither its time nor its peak memory."""
    started = time.perf_counter()
    if not locates(point.method):
        return 0.0
    model, tokenizer = (load or _loader(point))()
    hp = method_hparams(point.method, model, point.model, point.hparams)
    shared_context_templates(model, tokenizer, hp)
    layers = statistics_layers(point.method, model, hp)
    if layers:
        layer_moments(model, tokenizer, find_arch(model), layers, hp)
    return time.perf_counter() - started


def measure_point(point: ScalingPoint, path: str | Path | None = None, load: Callable | None = None) -> dict:
    """Run the point's method once in this process and return (and write, atomically) its measurement.

    `load` returns `(model, tokenizer)`; by default the study's model is loaded (`model.load.load_model`).
    Peak memory is this process's peak (`peak_memory.peak_memory_gb`): measure one point per process.
    """


    load = load or _loader(point)
    torch.manual_seed(point.seed)
    clock = time.perf_counter()
    model, tokenizer = load()
    forget, retain = _forget_and_retain(point)
    hp = method_hparams(point.method, model, point.model, point.hparams)
    load_seconds = time.perf_counter() - clock

    if torch.cuda.is_available():  # on a GPU the peak is the method's (as a cell's); on the CPU the process's
        torch.cuda.reset_peak_memory_stats()
    problem = UnlearningProblem(forget, retain, "fixed", point.seed, load_reference=lambda: load()[0],
                                cache=model_cache(model_fingerprint(model)))  # as a cell's memory reads it
    clock = time.perf_counter()
    outcome = run_method(point.method, model, tokenizer, problem, hp)
    unlearn_seconds = time.perf_counter() - clock

    log = outcome.log
    requests = log.get("requests") or []
    result = {
        "key": point.key,
        "point": asdict(point),
        "method_title": get_method(point.method).title,
        "family": FAMILIES.get(point.method, get_method(point.method).kind),
        "hparams": asdict(hp),
        "device": str(input_device(model)),
        "versions": {"e2u": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "timings_s": {"load": round(load_seconds, 2), "unlearn": round(unlearn_seconds, 2)},
        "edits": len(requests) if requests else None,
        "steps": log.get("steps") or sum(r.get("steps", 0) for r in requests),
        "peak_memory_gb": round(peak_memory_gb(), 3),
        "peak_memory_kind": peak_memory_kind(),
    }
    if path is not None:
        write_json_atomic(path, result)
    return result


def measure_in_subprocess(point: ScalingPoint, path: str | Path, timeout: float | None = None) -> dict:
    """`measure_point` in a fresh Python process (after `warm_shared_work` in another, for editors), so that
    the point's peak memory is its own; the measurement written to `path`. A failed child is an E2UError
    carrying its last lines of stderr."""
    steps = [["warm", point.to_json()]] if locates(point.method) else []
    steps.append(["measure", point.to_json(), str(path)])
    for args in steps:
        try:
            done = subprocess.run([sys.executable, "-m", "e2u.study.scaling", *args], env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise E2UError(f"scaling point {point.file_name}: {args[0]} ran past {timeout} s") from None
        if done.returncode != 0:
            tail = " | ".join(line for line in done.stderr.strip().splitlines()[-8:])
            raise E2UError(f"scaling point {point.file_name}: the {args[0]} process failed "
                           f"(exit {done.returncode}): {tail}")
    if not is_measured(path, point.key):
        raise E2UError(f"scaling point {point.file_name}: the measuring process exited without writing {path}")
    return json.loads(Path(path).read_text())


def is_measured(path: str | Path, key: str) -> bool:
    """True when `path` holds a complete measurement made for `key`."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(stored, dict) and stored.get("key") == key and "timings_s" in stored


def load_scaling(results_dir: str | Path, study_name: str) -> list[dict]:
    """Every scaling measurement of the study (`<results>/<study>/scaling/*.json`), by method then n."""
    found = []
    for p in sorted(scaling_dir(results_dir, study_name).glob("*.json")):
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue  # a half-written file is never renamed into place; anything else unreadable is skipped
    found = [r for r in found if isinstance(r, dict) and "point" in r and "timings_s" in r]
    return sorted(found, key=lambda r: (r["point"]["method"], r["point"]["n_forget"]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("warm", "measure") or (argv[0] == "measure") != (len(argv) == 3):
        print("usage: python -m e2u.study.scaling warm '<point JSON>' | measure '<point JSON>' <result path>",
              file=sys.stderr)
        return 2
    try:
        point = ScalingPoint.from_json(argv[1])
        if argv[0] == "warm":
            warm_shared_work(point)
        else:
            measure_point(point, argv[2])
    except E2UError as exc:
        print(f"e2u: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
