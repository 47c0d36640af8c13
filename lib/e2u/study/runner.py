"""One papermill run of `notebooks/unlearn.ipynb` per cell; and the plain runner: the cells in order, in this
process (`e2u study run --sequential`; the Dask executor in executor.py is the default).

The executed notebook is written to a temporary file and renamed into `book/runs/` only after
the cell succeeded and wrote its result, so neither a killed run nor a failed cell leaves a file
that a later run would trust. A failed cell keeps its executed notebook as `<cell>.failed.ipynb` beside
where its chapter would have been (papermill's convention; the book leaves it out), and its error's last
frames are reported with that path; the cell's next successful run removes it. The chapter's title is written by the notebook itself (it glues
`CellParams.title` into its first heading); nothing is patched in after execution.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill

from e2u.cell.params import CellParams
from e2u.errors import E2UError
from e2u.files import atomic_path
from e2u.study.grid import TEMPLATE, Study, cell_key, is_done, notebook_path, result_path
from e2u.study.run_lock import study_run_lock

log = logging.getLogger(__name__)


# How papermill (nbclient) ends a notebook's kernel once every cell has run: at once, not by a shutdown request it
# then waits ~2 s on (29.4 s against 32.1 s for a quick-study cell; `bench/kernel_environment_bench.py`). The
# notebook has written its result and papermill holds every output by then, so nothing is lost.
KERNEL_SHUTDOWN = "immediate"


@dataclass
class CellOutcome:
    cell_id: str
    status: str  # "cached" | "ran" | "failed"
    seconds: float
    error: str = ""
    attempts: int = 1  # more than one: its worker died and the cell ran again
    details: str = ""  # a failed cell: where its executed notebook was kept, and the error's last frames


def notebook_parameters(cell: CellParams, result: Path, key: str, rerun: str = "") -> dict:
    """Papermill parameters: the cell as one JSON object (the notebook reads it with `CellParams.from_json`),
    where to write its result, the key to store in it, and (`e2u rerun`) the parameters changed from the study's."""
    return {"cell": cell.to_json(), "result_path": str(result), "cache_key": key,
            **({"rerun": rerun} if rerun else {})}


def failed_notebook_path(notebook: Path) -> Path:
    """Where a failed cell's executed notebook is kept: `<cell>.failed.ipynb` beside its chapter's place."""
    return notebook.with_name(f"{notebook.stem}.failed.ipynb")


def run_cell_notebook(cell: CellParams, result: Path, notebook: Path, key: str, kernel: str = "python3",
                      rerun: str = "") -> None:
    """Execute the cell's notebook into `notebook` (whole, once its result is written); on failure keep what
    was executed as `failed_notebook_path(notebook)` and raise."""
    notebook.parent.mkdir(parents=True, exist_ok=True)
    failed = failed_notebook_path(notebook)
    with atomic_path(notebook, ".ipynb") as tmp:
        try:
            papermill.execute_notebook(
                str(TEMPLATE), str(tmp), parameters=notebook_parameters(cell, result, key, rerun),
                kernel_name=kernel, progress_bar=False, cwd=str(TEMPLATE.parent), shutdown_kernel=KERNEL_SHUTDOWN,
            )
            if not result.is_file():
                raise E2UError(f"cell {cell.cell_id}: the notebook finished without writing {result}")
        except Exception:
            if tmp.is_file() and tmp.stat().st_size:  # papermill wrote the notebook up to the failing cell
                os.replace(tmp, failed)
            raise
        hide_injected_parameters(tmp)
    failed.unlink(missing_ok=True)  # stale: this run succeeded


def hide_injected_parameters(notebook: Path) -> None:
    """Tag the parameter cells (the template's and the one papermill injected) `remove-cell`: they hold this
    machine's paths and the cell as raw JSON, which the chapter shows in readable form (title, tables)."""
    executed = nbformat.read(str(notebook), as_version=4)
    for cell in executed.cells:
        tags = cell.metadata.get("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(executed, str(notebook))


def run_study(study: Study, results_dir: Path, book_dir: Path, kernel: str = "python3") -> list[CellOutcome]:
    """Run every cell that is not already done; report what happened to each."""
    results_dir, book_dir = Path(results_dir).resolve(), Path(book_dir).resolve()  # the kernel runs elsewhere
    with study_run_lock(book_dir, results_dir / study.name):
        return [_run_one(study, cell, results_dir, book_dir, kernel) for cell in study.cells]


def _run_one(study: Study, cell: CellParams, results_dir: Path, book_dir: Path, kernel: str) -> CellOutcome:
    """One cell in this process: cached, ran, or failed with its error."""
    key = cell_key(cell)
    result, notebook = result_path(results_dir, study, cell), notebook_path(book_dir, study, cell)
    started = time.perf_counter()
    if is_done(result, notebook, key):
        log.info("cell %s: cached", cell.cell_id)
        return CellOutcome(cell.cell_id, "cached", 0.0)
    result.unlink(missing_ok=True)
    log.info("cell %s: running", cell.cell_id)
    try:
        run_cell_notebook(cell, result, notebook, key, kernel)
        return CellOutcome(cell.cell_id, "ran", time.perf_counter() - started)
    except Exception as exc:  # one failed cell must not stop the others
        result.unlink(missing_ok=True)
        message = error_line(exc)
        log.error("cell %s failed: %s", cell.cell_id, message)
        return CellOutcome(cell.cell_id, "failed", time.perf_counter() - started, message,
                           details=failure_details(exc, notebook))


def error_line(exc: BaseException) -> str:
    """The last line of an exception's message (papermill's is the notebook's traceback), or its type."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_frames(exc: BaseException, frames: int = 3) -> str:
    """The last `frames` frames of the error's traceback and its message, without terminal colours: the
    notebook's (papermill keeps the kernel's traceback) or, for an error outside it, this process's."""
    entries = getattr(exc, "traceback", None)  # papermill.PapermillExecutionError: the kernel's, one frame each
    if not isinstance(entries, list) or not entries:
        entries = traceback.format_exception(exc)
    return "\n".join(_ANSI.sub("", entry).rstrip() for entry in entries[-frames - 1:])


def failure_details(exc: BaseException, notebook: Path) -> str:
    """What a reader needs to debug a failed cell: where its executed notebook was kept, and the last frames."""
    failed = failed_notebook_path(notebook)
    where = f"executed notebook kept: {failed}" if failed.is_file() else "no notebook was executed"
    return f"{where}\n{error_frames(exc)}"
