"""`e2u rerun <chapter> -p key value ...`: one cell's chapter run again with other parameters, then the book rebuilt.

A chapter is a cell of the study, named `<setting>/<label>-seed<n>` as in the book's table of contents. A key
is a cell parameter (`e2u.cell.run.CellParams`: `max_new_tokens`, `refusal`, `chunks`, ...) or a hyper-parameter of
the cell's method (`layer`, `v_lr`, ...; `hparams.<name>` says so explicitly); a value is read as YAML (`7`,
`0.5`, `[4, 5]`, `fixed`). Everything is checked before any computation: the chapter, each key (an unknown one
is named with the allowed ones), each value's type and range, and the layers against the model's config
(`cell_check`). The rerun is a variant beside the study's cell (`variants.py`): its own result file and chapter,
named by what changed (`rome-seed0.rerun-layer-2.json`), the study's own files left byte for byte as they were.
Its chapter says at its top which parameters differ from the study's; the summary lists it apart, and the claims
read only the study's own cells. A failed rerun keeps its executed notebook (`runner.failed_notebook_path`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import yaml

from e2u.cell.check import check_cells, model_skeleton
from e2u.cell.params import CellParams
from e2u.errors import E2UError
from e2u.methods import get_method, method_hparams
from e2u.study.grid import Study, cell_key, notebook_path, result_path
from e2u.study.run_lock import study_run_lock
from e2u.study.runner import error_line, failure_details, run_cell_notebook
from e2u.study.variants import variant_name, variant_path

FIXED = ("setting", "label")  # what names the chapter: not a parameter a rerun may change


def find_chapter(study: Study, chapter: str) -> CellParams:
    """The cell whose chapter is `chapter` (`<setting>/<cell id>`); an unknown one lists those that exist."""
    chapters = {f"{c.setting}/{c.cell_id}": c for c in study.cells}
    if chapter not in chapters:
        raise E2UError(f"no chapter {chapter!r} in study {study.name}; its chapters are: {', '.join(chapters)}")
    return chapters[chapter]


def allowed_keys(cell: CellParams) -> tuple[list[str], list[str]]:
    """(cell parameters, hyper-parameter names of the cell's method, aliases included) a rerun may set."""
    hparams = get_method(cell.method).hparams
    names = [f.name for f in dataclasses.fields(hparams)] + list(getattr(hparams, "ALIASES", {}))
    return [f.name for f in dataclasses.fields(CellParams) if f.name not in FIXED], sorted(set(names))


def changed_cell(cell: CellParams, pairs: Sequence[tuple[str, str]]) -> tuple[CellParams, dict]:
    """`cell` with each (key, value text) applied, and {key: [the study's value, the new one]}; checked."""
    fields, hparam_names = allowed_keys(cell)
    values, hparams, changes = asdict(cell), dict(cell.hparams), {}
    aliases = getattr(get_method(cell.method).hparams, "ALIASES", {})
    effective = method_hparams(cell.method, model_skeleton(cell.model), cell.model, cell.hparams)  # defaults too
    for key, text in pairs:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise E2UError(f"parameter {key}: could not read {text!r} as a value") from None
        name = key.removeprefix("hparams.")
        if key.startswith("hparams.") or (key not in fields and name in hparam_names):
            if name not in hparam_names:
                raise E2UError(f"unknown hyper-parameter {name!r} of {cell.method}; allowed: {', '.join(hparam_names)}")
            changes[key] = [getattr(effective, aliases.get(name, name)), value]
            hparams[name] = value
        elif key in fields:
            changes[key] = [values[key], value]
            values[key] = value
        else:
            raise E2UError(f"unknown parameter {key!r} for chapter {cell.setting}/{cell.cell_id}; allowed: the cell's "
                           f"{', '.join(fields)}, or a hyper-parameter of {cell.method}: {', '.join(hparam_names)}")
    values["hparams"] = hparams
    new = CellParams(**values)
    check_cells([new])
    return new, changes


def rerun_chapter(study: Study, chapter: str, pairs: Sequence[tuple[str, str]], results_dir: Path,
                  book_dir: Path) -> tuple[dict, str]:
    """Run `chapter`'s notebook again with the changed parameters, as a variant beside the study's cell; return
    the changes and the variant's chapter (`<setting>/<cell id>.<variant name>`)."""
    cell = find_chapter(study, chapter)
    if not pairs:
        raise E2UError("e2u rerun: give at least one parameter to change, as -p key value")
    new, changes = changed_cell(cell, pairs)
    name = variant_name(changes)
    result = variant_path(result_path(results_dir.resolve(), study, cell), name)
    notebook = variant_path(notebook_path(book_dir.resolve(), study, cell), name)
    # The run lock: never beside a running study, which reads and writes the same folders.
    with study_run_lock(book_dir.resolve(), results_dir.resolve() / study.name):
        try:
            run_cell_notebook(new, result, notebook, cell_key(new), rerun=json.dumps(changes, sort_keys=True))
        except Exception as exc:
            result.unlink(missing_ok=True)
            raise E2UError(f"rerun of {chapter} failed: {error_line(exc)}\n{failure_details(exc, notebook)}") from None
    return changes, f"{cell.setting}/{notebook.stem}"


def rerun_note(rerun: str) -> str:
    """The chapter's top note, from the notebook's `rerun` parameter (the changes as JSON; empty: none)."""
    if not rerun:
        return ""
    changes = json.loads(rerun)
    listed = "; ".join(f"`{key}` {json.dumps(new)} (the study's: {json.dumps(old)})" for key, (old, new) in changes.items())
    return (f"**Rerun with parameters that differ from the study's:** {listed}. A variant beside the study's own "
            "cell, which is unchanged: the summary lists it apart, and the claims do not read it.")
