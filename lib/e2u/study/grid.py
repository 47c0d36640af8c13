"""A study: the grid of cells from a YAML file, their cache keys, and running them with papermill.

    name: default
    model: smollm2-135m-instruct
    setting: pretrained
    data: {source: mini}
    evaluation: {max_new_tokens: 32, batch_size: 16}   # nli_model: <dir> adds entailment
    refusal: fixed
    prompt: {template: "[INST] {question} [/INST]"}   # or {system: ...}: how questions are rendered (a setting's own wins)
    seeds: [0]
    save_changes: false     # true: each cell also writes its change, <cell>.change.safetensors (e2u eval reads it)
    methods:
      - rome
      - {name: gradient_ascent, label: ga, hparams: {lr: 2.0e-5}}
      - {name: memit, label: memit-easyedit, easyedit: llama-7b.yaml}   # an EasyEdit file, then `hparams`

Each cell becomes `book/runs/<study>/<setting>/<cell>.ipynb` (the executed notebook) and
`results/<study>/<setting>/<cell>.json`. A cell whose result file carries the same key, and
whose notebook exists, is skipped: a killed study resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2u import __version__
from e2u.cell.params import CellParams
from e2u.data.sources import source_files, source_options
from e2u.editing.easyedit import read_easyedit
from e2u.errors import E2UError
from e2u.files import TEMPLATES, sha256_of_file, sha256_of_json
from e2u.methods import method_code_files
from e2u.model.prompts import prompt_format
from e2u.provenance import code_digest
from e2u.study.scaling import SCALING_FOLDER, scaling_points

log = logging.getLogger(__name__)

TEMPLATE = TEMPLATES / "unlearn.ipynb"
_STUDY_KEYS = frozenset({"name", "model", "setting", "settings", "data", "evaluation", "refusal", "seeds", "methods",
                         "device", "dtype", "scaling", "prompt", "save_changes"})


# A method entry: the method, its cell label, hyper-parameters, the settings it runs in, and the recipes
# A data option written "{seed}" takes each study seed in turn: `seed: "{seed}"` (factual: the forget/retain
# draw) or `forget_draw: "{seed}"` (pistol: the forget edge) gives every seed its own forget set.
SEED_PLACEHOLDER = "{seed}"
# (refusal: fixed | sampled | self, merge_group: same-subject questions per edit request, chunks: the forget
# set unlearned in that many chunks, one after another; seeds: a subset of the study's seeds, for the
# entries that need fewer draws than the rest).
# easyedit: an EasyEdit hyper-parameter file (relative to the study file), read into e2u's keys at load, so that the
# cell's key holds its values; the entry's own `hparams` override it.
METHOD_ENTRY_KEYS = frozenset({"name", "label", "hparams", "settings", "refusal", "merge_group", "chunks", "seeds",
                               "easyedit"})


@dataclass(frozen=True)
class Study:
    name: str
    cells: tuple[CellParams, ...]
    source: Path
    scaling: tuple = ()  # scaling.ScalingPoint: how a method's cost grows with the forget questions


def load_study(path: str | os.PathLike) -> Study:
    """Parse and validate a study YAML; every error names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise E2UError(f"study file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise E2UError(f"study file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise E2UError(f"study file {path}: expected a mapping with keys {sorted(_STUDY_KEYS)}")
    unknown = set(spec) - _STUDY_KEYS
    if unknown:
        raise E2UError(f"study file {path}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_STUDY_KEYS)}")
    for required in ("name", "methods"):
        if required not in spec:
            raise E2UError(f"study file {path}: missing required field {required!r}")
    name = spec["name"]
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise E2UError(f"study file {path}: field 'name' must be letters, digits, '-' or '_', got {name!r}")
    prompt_format(spec.get("prompt"), f"study file {path}: prompt")
    settings = _settings(spec, path)
    evaluation = spec.get("evaluation") or {}
    if not isinstance(evaluation, dict) or set(evaluation) - {"max_new_tokens", "batch_size", "nli_model", "paraphrased"}:
        raise E2UError(f"study file {path}: field 'evaluation' accepts only max_new_tokens, batch_size, nli_model "
                       "(a local NLI model directory: entailment is computed with it) and paraphrased (the splits "
                       "also asked in paraphrase, such as [forget])")
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise E2UError(f"study file {path}: field 'seeds' must be a non-empty list of integers")
    methods = spec["methods"]
    if not isinstance(methods, list) or not methods:
        raise E2UError(f"study file {path}: field 'methods' must be a non-empty list")
    cells = []
    for position, entry in enumerate(methods):
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - METHOD_ENTRY_KEYS:
            raise E2UError(f"study file {path}: methods[{position}] must be a name or a mapping with "
                           f"{', '.join(sorted(METHOD_ENTRY_KEYS))}")
        only = entry.get("settings")
        unknown_settings = sorted(set(only or []) - {s["name"] for s in settings})
        if unknown_settings:
            raise E2UError(f"study file {path}: methods[{position}].settings names unknown setting(s) {unknown_settings}")
        hparams = _entry_hparams(entry, path, position)
        entry_seeds = entry.get("seeds", seeds)
        if (not isinstance(entry_seeds, list) or not entry_seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) and s in seeds for s in entry_seeds)):
            raise E2UError(f"study file {path}: methods[{position}].seeds must be a non-empty list of the study's "
                           f"seeds {seeds}, got {entry_seeds!r}")
        for setting in settings:
            if only is not None and setting["name"] not in only:
                continue
            for seed in entry_seeds:
                data = {key: seed if value == SEED_PLACEHOLDER else value for key, value in setting["data"].items()}
                try:
                    cells.append(CellParams(
                        model=setting.get("model") or spec.get("model", "smollm2-135m-instruct"),
                        setting=setting["name"], data_source=data["source"], data_path=str(data.get("path", "") or ""),
                        data_options={k: v for k, v in data.items() if k not in ("source", "path")},
                        retain_model=str(setting.get("retain_model", "") or ""), finetune=setting.get("finetune") or {},
                        prompt=setting.get("prompt", spec.get("prompt")) or {},
                        method=entry["name"], label=entry.get("label", ""), hparams=hparams,
                        refusal=entry.get("refusal", spec.get("refusal", "fixed")),
                        merge_group=entry.get("merge_group", 0), chunks=entry.get("chunks", 1), seed=seed,
                        device=spec.get("device", "") or "",
                        dtype=spec.get("dtype", "") or "", save_changes=spec.get("save_changes", False), **evaluation,
                    ))
                except E2UError as exc:
                    raise E2UError(f"study file {path}: methods[{position}] in setting {setting['name']!r}: {exc}") from None
    ids = [f"{c.setting}/{c.cell_id}" for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise E2UError(f"study file {path}: cells {duplicates} appear twice; give them distinct labels")
    points = scaling_points(spec, spec.get("model", "smollm2-135m-instruct"), path)
    return Study(name=name, cells=tuple(cells), source=path, scaling=tuple(points))


def _entry_hparams(entry: dict, path: Path, position: int):
    """The entry's hyper-parameters: its EasyEdit file's, if it names one, then its own `hparams`."""
    own = entry.get("hparams") or {}
    if "easyedit" not in entry:
        return own
    source = entry["easyedit"]
    if not isinstance(source, str) or not source:
        raise E2UError(f"study file {path}: methods[{position}].easyedit: expected the path of an EasyEdit file")
    try:
        read = read_easyedit((path.parent / Path(source).expanduser()).resolve(), entry["name"])
    except E2UError as exc:
        raise E2UError(f"study file {path}: methods[{position}]: {exc}") from None
    return {**read.hparams, **own} if isinstance(own, dict) else own


def _settings(spec: dict, path: Path) -> list[dict]:
    """`settings:` (a list of {name, data, model}) or the single `setting:` + `data:` shorthand."""
    if "settings" in spec and ("setting" in spec or "data" in spec):
        raise E2UError(f"study file {path}: give either 'settings' or 'setting' + 'data', not both")
    if "settings" in spec:
        raw = spec["settings"]
        if not isinstance(raw, list) or not raw:
            raise E2UError(f"study file {path}: field 'settings' must be a non-empty list of {{name, data, model}}")
    else:
        raw = [{"name": spec.get("setting", "pretrained"), "data": spec.get("data", {"source": "mini"})}]
    settings = []
    for position, setting in enumerate(raw):
        where = f"study file {path}: settings[{position}]"
        if not isinstance(setting, dict) or "name" not in setting or set(setting) - {"name", "data", "model", "retain_model", "finetune",
                                                                          "prompt"}:
            raise E2UError(f"{where} must be a mapping with name, data and optional model, retain_model, finetune, "
                           "prompt")
        prompt_format(setting.get("prompt"), f"{where}: prompt")
        if not isinstance(setting.get("finetune") or {}, dict):
            raise E2UError(f"{where}: field 'finetune' must be a mapping of finetuning hyper-parameters")
        if not isinstance(setting["name"], str) or not setting["name"].replace("-", "").replace("_", "").isalnum():
            raise E2UError(f"{where}: field 'name' must be letters, digits, '-' or '_', got {setting['name']!r}")
        if setting["name"] == SCALING_FOLDER:
            raise E2UError(f"{where}: a setting may not be named {SCALING_FOLDER!r} (the folder of the scaling files)")
        data = setting.get("data", {"source": "mini"})
        data = {"source": data} if isinstance(data, str) else data
        if not isinstance(data, dict) or "source" not in data:
            raise E2UError(f"{where}: field 'data' must be a mapping with 'source', optional 'path' and source options")
        data = _paths_resolved(data, path.parent)
        try:
            source_options(data["source"], {k: 0 if v == SEED_PLACEHOLDER else v for k, v in data.items()
                                            if k not in ("source", "path")})
        except E2UError as exc:
            raise E2UError(f"{where}: {exc}") from None
        settings.append({**setting, "data": data})
    names = [s["name"] for s in settings]
    if len(set(names)) != len(names):
        raise E2UError(f"study file {path}: setting names must be distinct, got {names}")
    return settings


PATH_FIELDS = ("path", "entities_path")  # data fields naming local files


def _paths_resolved(data: dict, study_dir: Path) -> dict:
    """`data` with relative local paths made absolute against the study file's folder, once, here: the cell
    notebook runs in another working directory, where a relative path would name another file."""
    resolved = dict(data)
    for name in PATH_FIELDS:
        value = resolved.get(name)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            resolved[name] = str((study_dir / value).resolve())
    return resolved


def cell_key(cell: CellParams) -> str:
    """Hash of the cell's parameters, the e2u version, the code it depends on, the template and the data files."""
    files = {str(p.name): sha256_of_file(p)
             for p in source_files(cell.data_source, cell.data_path or None, cell.data_options)}
    return sha256_of_json({"params": cell.keyed(), "e2u": __version__, "lib": code_digest(method_code_files(cell.method)),
                           "template": sha256_of_file(TEMPLATE), "data": files})[:24]


def result_path(results_dir: Path, study: Study, cell: CellParams) -> Path:
    return results_dir / study.name / cell.setting / f"{cell.cell_id}.json"


def notebook_path(book_dir: Path, study: Study, cell: CellParams) -> Path:
    """The cell's chapter: under the study's own folder, so that two studies with the same setting and cell
    names never share (or overwrite) a chapter."""
    return book_dir / "runs" / study.name / cell.setting / f"{cell.cell_id}.ipynb"


def is_done(result: Path, notebook: Path, key: str) -> bool:
    if not (result.is_file() and notebook.is_file()):
        return False
    try:
        return json.loads(result.read_text()).get("key") == key
    except (json.JSONDecodeError, OSError):
        return False
