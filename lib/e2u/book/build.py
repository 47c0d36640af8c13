"""The book built from a study's results: the generated chapters executed by papermill (written whole or not at
all), the table of contents pointed at this study's chapters, then `jupyter-book build` (`e2u book`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import papermill
import yaml

from e2u.errors import E2UError
from e2u.files import TEMPLATES, atomic_path, book_root, sha256_of_file, sha256_of_json
from e2u.provenance import PACKAGE, closure, code_digest
from e2u.study.grid import load_study, notebook_path, result_path
from e2u.study.cluster import machine_cores
from e2u.study.run_lock import study_run_lock
from e2u.study.runner import KERNEL_SHUTDOWN, hide_injected_parameters
from e2u.study.scaling import scaling_dir
from e2u.study.variants import split_variant

# notebooks/<name>.ipynb executed into book/<name>.ipynb from the results
GENERATED_CHAPTERS = ("intro", "summary", "claims", "cost", "reproducibility")  # intro: the root page, the answer
API_CHAPTER = "api"  # notebooks/api.ipynb: the Python API on the embedded model, executed on its own (no results)
API_MODULE = PACKAGE / "api.py"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch reads at start-up


def build_book(study_file: str | Path, results_dir: str | Path, book: str | Path, root: str | Path | None = None,
               no_build: bool = False, api: bool = True) -> Path | None:
    """Execute the generated chapters (intro, summary, claims, cost, reproducibility, one per setting, and with
    `api` the Python API's, a minute on the embedded model) into `book`, one per core at a time, then build the
    Jupyter Book project at `root` (by default `files.book_root()`: its `_config.yml` and `_toc.yml`, which read
    the chapters from `<root>/book`); return the built site's index page (None with `no_build`)."""
    study = load_study(study_file)
    book = Path(book).resolve()  # the chapters' processes run papermill, which changes directory
    root = Path(root).resolve() if root else book_root()
    results = Path(results_dir).resolve() / study.name
    if not results.is_dir():
        raise E2UError(f"no results for study {study.name!r} in {results}: run `e2u study run {study_file}` first")
    if not no_build:
        for name in ("_config.yml", "_toc.yml"):
            if not (root / name).is_file():
                raise E2UError(f"book root {root} has no {name}: give --root a Jupyter Book project directory")
        if book.resolve() != (root / "book").resolve():
            raise E2UError(f"--book {book} is not {root / 'book'}, where {root / '_toc.yml'} reads the chapters; "
                           "pass --book there or --no-build")

    with study_run_lock(book.resolve(), results) as removed:  # refuses while a study runs; a killed run's
        for leftover in removed:                              # half-written notebooks would enter the book
            print(f"removed {leftover.name}: a half-written file of a killed run")
    for stale in stale_outputs(study, Path(results_dir), book):
        print(f"removing {stale}: not a cell of study {study.name}")
        stale.unlink()
    run_side_by_side(chapter_jobs(study, results, book, api))
    if no_build:
        return None
    started = time.perf_counter()
    toc = study_toc(root, book, study.name)
    clear_another_studys_site(root / "_build" / "html", study.name)
    command = ["jupyter-book", "build", str(root), "--toc", str(toc), "--warningiserror", "--keep-going"]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        command[0] = str(jb)
    done = subprocess.run(command, cwd=root)
    if done.returncode != 0:
        raise E2UError(f"jupyter-book build failed (exit {done.returncode}); see the log above")
    (root / "_build" / "html" / SITE_STUDY_FILE).write_text(study.name)
    index = root / "_build" / "html" / "index.html"
    print(f"book built in {time.perf_counter() - started:.1f} s: {index}")
    return index


def chapter_jobs(study, results: Path, book: Path, api: bool) -> list[tuple[str, Callable, tuple]]:
    """The chapters to execute, each (name, function, its arguments): the API's first (the longest, on the embedded
    model), then the generated chapters and one per setting."""
    parameters = {"results_dir": str(results), "study_name": study.name}
    jobs = [(API_CHAPTER, api_chapter, (book,))] if api else []
    jobs += [(chapter, execute_chapter, (chapter, book / f"{chapter}.ipynb", parameters)) for chapter in GENERATED_CHAPTERS]
    folder = book / SETTING_CHAPTERS
    jobs += [(f"{SETTING_CHAPTERS}/{setting}", execute_chapter,
              ("setting", folder / f"{setting}.ipynb", {**parameters, "setting": setting}))
             for setting in setting_names(study, results, folder)]
    return jobs


def run_side_by_side(jobs: list[tuple[str, Callable, tuple]], workers: int | None = None) -> None:
    """Run the chapter jobs in `workers` processes (default: one per core; processes, not threads, since papermill
    changes the working directory while it runs a notebook), printing each one's time as it ends; the first error
    is raised once every job has ended (each chapter is written whole or not at all, so the others are kept)."""
    workers = min(workers or machine_cores(), len(jobs)) or 1
    threads = max(1, machine_cores() // workers)
    started, errors = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_share_of_the_cores, initargs=(threads,)) as pool:
        futures = {pool.submit(_timed, function, *arguments): name for name, function, arguments in jobs}
        for future in as_completed(futures):
            try:
                ran, seconds = future.result()
                print(f"{futures[future]} notebook {'executed' if ran is not False else 'unchanged, kept'} "
                      f"in {seconds:.1f} s", flush=True)
            except Exception as exc:  # the others go on; reported below
                print(f"{futures[future]} notebook failed: {exc}", flush=True)
                errors.append(exc)
    print(f"{len(jobs)} chapters in {time.perf_counter() - started:.1f} s, {workers} at a time")
    if errors:
        raise errors[0]


def _share_of_the_cores(threads: int) -> None:
    """In a new chapter process: the kernels it starts use `threads` threads each, so that the chapters running
    side by side do not ask for more threads than there are cores (two kernels of two threads on two cores made the
    API chapter 2.5 times slower). A value the user exported is kept."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def _timed(function: Callable, *arguments) -> tuple[object, float]:
    """In a worker process: what `function(*arguments)` returned, and its seconds."""
    started = time.perf_counter()
    return function(*arguments), time.perf_counter() - started


SITE_STUDY_FILE = ".e2u-study"  # in the built site: which study it shows
SETTING_CHAPTERS = "results"  # book/results/<setting>.ipynb: one results chapter per setting (notebooks/setting.ipynb)


def execute_chapter(template: str, out: Path, parameters: dict) -> None:
    """Execute notebooks/<template>.ipynb with `parameters` into `out` (written whole or not at all), its
    parameter cells removed from the page."""
    with atomic_path(out, ".ipynb") as tmp:
        papermill.execute_notebook(str(TEMPLATES / f"{template}.ipynb"), str(tmp), kernel_name="python3",
                                   progress_bar=False, parameters=parameters, cwd=str(TEMPLATES),
                                   shutdown_kernel=KERNEL_SHUTDOWN)
        hide_injected_parameters(tmp)


def api_chapter(book: Path) -> bool:
    """Execute notebooks/api.ipynb into `book/api.ipynb` unless it is there for the same template and library code
    (it reads no study's results: one execution serves every study); whether it ran."""
    out = book / f"{API_CHAPTER}.ipynb"
    template = TEMPLATES / f"{API_CHAPTER}.ipynb"
    key = sha256_of_json({"template": sha256_of_file(template), "code": code_digest(sorted(closure({API_MODULE})))})
    if out.is_file() and json.loads(out.read_text()).get("metadata", {}).get("e2u_key") == key:
        return False
    execute_chapter(API_CHAPTER, out, {})
    executed = json.loads(out.read_text())
    executed["metadata"]["e2u_key"] = key
    with atomic_path(out, ".ipynb") as tmp:
        tmp.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")
    return True


def setting_names(study, results: Path, folder: Path) -> list[str]:
    """The study's settings that have results (one chapter each under `folder`); the chapters of settings the
    study no longer has are removed (the table of contents reads the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = list(dict.fromkeys(c.setting for c in study.cells if any((results / c.setting).glob("*.json"))))
    for stale in sorted(folder.glob("*.ipynb")):
        if stale.stem not in settings:
            print(f"removing {stale}: not a setting of study {study.name}")
            stale.unlink()
    return settings


def study_toc(root: Path, book: Path, study: str) -> Path:
    """The project's `_toc.yml` with its chapters glob pointed at this study's notebooks (`book/runs/<study>/`),
    written beside them: a book shows one study's chapters, never another's."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())

    def point(entries):
        for entry in entries or []:
            if isinstance(entry.get("glob"), str) and entry["glob"].startswith("book/runs/"):
                entry["glob"] = f"book/runs/{study}/*/*"
            point(entry.get("sections"))

    point(toc.get("chapters"))
    if not (book / f"{API_CHAPTER}.ipynb").is_file():  # built without the Python API chapter (`--no-api-chapter`)
        toc["chapters"] = [entry for entry in toc["chapters"] if entry.get("file") != f"book/{API_CHAPTER}"]
    path = book / "runs" / study / "_toc.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(toc, sort_keys=False))
    return path


def clear_another_studys_site(site: Path, study: str) -> None:
    """Remove a built site of another study: Sphinx keeps pages it no longer builds, and they would stay
    reachable beside this study's."""
    marker = site / SITE_STUDY_FILE
    if site.is_dir() and (not marker.is_file() or marker.read_text().strip() != study):
        shutil.rmtree(site.parent)


def stale_outputs(study, results_dir: Path, book_dir: Path) -> list[Path]:
    """Result files, scaling files and chapter notebooks of cells the study no longer has (generated, git-ignored):
    left in place they would appear in the book beside the current cells. A current cell's reruns
    (`study.variants`) and its kept failed notebook (`<cell>.failed.ipynb`, which the book leaves out) stay."""
    keep = {result_path(results_dir, study, c).resolve() for c in study.cells}
    keep |= {notebook_path(book_dir, study, c).resolve() for c in study.cells}
    keep |= {(scaling_dir(results_dir, study.name) / p.file_name).resolve() for p in study.scaling}
    found = list((results_dir / study.name).glob("*/*.json")) + list((book_dir / "runs" / study.name).glob("*/*.ipynb"))
    # Hidden files are a running cell's temporary notebook: never touched here.
    return sorted(p for p in found if _cell_file(p).resolve() not in keep and not p.name.startswith("."))


def _cell_file(path: Path) -> Path:
    """The study cell's own file that `path` belongs to: itself, or the cell a rerun or failed notebook is of."""
    return path.with_name(split_variant(path.stem.removesuffix(".failed"))[0] + path.suffix)
