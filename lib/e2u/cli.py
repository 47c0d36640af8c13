"""`e2u`: prepare the model, run a study, build the book.

    e2u prepare [studies/default.yaml] convert the embedded model once (GGUF -> safetensors); with a
                                      study, also probe answers and finetuned models its settings need
    e2u study run studies/default.yaml  every cell not done, as Dask tasks (--scheduler tcp://HOST:PORT, --sequential)
    e2u study plan studies/default.yaml the tasks it would submit, with their resources (--gpus N)
    e2u book studies/default.yaml     summary and cost chapters + Jupyter Book build (--root: another book project)
    e2u compare A B [--tolerance 1e-6] do two result directories hold the same per-item numbers?
    e2u export STUDY --format csv      the study's per-item results as one long table (csv or parquet)
    e2u --version; -v/--verbose before or after the subcommand
    e2u eval STUDY SETTING --change F   a saved change (or --model DIR|HUB_ID) on a setting's splits, written to
                                      <results>/<study>/<setting>/evals/<name>.json

Each command imports its work when it runs (the one place in the library with imports inside functions):
torch, transformers, Dask and papermill take seconds to load, and `e2u --help` or a mistyped command should
answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from importlib import metadata
from pathlib import Path

from e2u import __version__
from e2u.errors import E2UError


def _prepare(args) -> int:
    """Convert the model; with a study, also prepare what its settings need (probe answers, finetuned models)."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.model.load import load_model
    from e2u.study.grid import load_study
    from e2u.study.prepare import prepare_study
    from e2u.study.stages import record_stage

    started = time.perf_counter()
    if not args.study:
        load_model(args.model)
        print(f"model {args.model} ready in {time.perf_counter() - started:.1f} s")
        return 0

    study = load_study(args.study)
    install = (args.install_seconds or "").strip()
    if install.isdigit():  # `make book` passes the seconds its install took (the stamp file's content)
        record_stage(args.results, study.name, "install", float(install))
    for line in prepare_study(study, models_only=args.models_only):
        print(line)
    seconds = time.perf_counter() - started
    record_stage(args.results, study.name, "prepare", seconds)
    print(f"study {study.name} prepared in {seconds:.1f} s")
    return 0


def _study_run(args) -> int:
    """Every cell not already done: as Dask tasks (a local cluster, or --scheduler), or --sequential here."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.cell.check import check_cells
    from e2u.study.executor import run_study_on_dask
    from e2u.study.grid import load_study
    from e2u.study.runner import run_study
    from e2u.study.stages import record_stage

    if args.sequential and args.dashboard is not None:
        raise E2UError("--dashboard shows the Dask cluster's work: it has none to show with --sequential")
    study = load_study(args.study)
    check_cells(study.cells)  # before any cell starts: a fault names the cell and the hyper-parameter
    started = time.perf_counter()
    if args.sequential:
        outcomes, steps = run_study(study, Path(args.results), Path(args.book)), []
    else:
        outcomes, steps = run_study_on_dask(study, Path(args.results), Path(args.book), args.scheduler, args.workers,
                                            progress=not args.no_progress, dashboard=args.dashboard)
    for step in steps:
        print("\n".join(step["lines"]) + f"\n{step['step']}: {step['seconds']:.1f} s")
        record_stage(args.results, study.name, f"shared: {step['step']}", step["seconds"])
    for o in outcomes:
        retried = f" (ran {o.attempts} times: its worker died)" if o.attempts > 1 else ""
        print(f"{o.status:>7}  {o.cell_id:<32} {o.seconds:7.1f} s  {o.error}{retried}")
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:  # where its executed notebook was kept, and the error's last frames
        if o.details:
            print(f"\n{o.cell_id} failed:\n" + "\n".join("    " + line for line in o.details.splitlines()))
    record_stage(args.results, study.name, "study", time.perf_counter() - started)
    print(f"study {study.name}: {len(outcomes)} cells, {sum(o.status == 'cached' for o in outcomes)} cached, "
          f"{len(failed)} failed, {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


def _study_plan(args) -> int:
    """What `study run` would submit, with each task's resources; starts no cluster and loads no model."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.study.executor import plan_study
    from e2u.study.grid import load_study

    study = load_study(args.study)
    plan = plan_study(study, Path(args.results).resolve(), Path(args.book).resolve(), gpus=args.gpus > 0)
    print("\n".join(plan.describe()))
    print(f"study {study.name}: {len(plan.steps)} shared steps, {len(plan.cells)} cells and {len(plan.points)} "
          f"scaling points to run, {len(plan.cached) + len(plan.measured)} cached")
    return 0


def _rerun(args) -> int:
    """`e2u rerun`: the chapter's cell with the changed parameters (checked first), then `e2u book`."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.study.grid import load_study
    from e2u.study.rerun import rerun_chapter

    study = load_study(args.study)
    changes, chapter = rerun_chapter(study, args.chapter, [tuple(p) for p in args.parameter], Path(args.results),
                                     Path(args.book))
    print(f"reran {args.chapter} with " + ", ".join(f"{k} = {new!r} (was {old!r})" for k, (old, new) in changes.items())
          + f": a variant beside the study's cell, {chapter}")
    if args.no_build:
        return 0
    # the book as it was: its Python API chapter is brought up to date only if it has one (minutes of its own)
    return _book(argparse.Namespace(study=args.study, results=args.results, book=args.book, root=args.root,
                                    no_build=False, no_api_chapter=not (Path(args.book) / "api.ipynb").is_file()))


def _book(args) -> int:
    """Execute the generated chapters into `--book`, then build the Jupyter Book project at `--root`."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.book.build import build_book

    build_book(args.study, args.results, args.book, args.root or None, args.no_build, not args.no_api_chapter)
    return 0


def _compare(args) -> int:
    """Do two result directories hold the same per-item numbers (to `--tolerance`)?"""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.study.compare import compare_results

    for directory in (args.a, args.b):
        if not Path(directory).is_dir():
            raise E2UError(f"compare: {directory} is not a directory of result files (<setting>/<cell>.json)")
    comparisons = compare_results(args.a, args.b, args.tolerance)
    if not comparisons:
        raise E2UError(f"compare: no result files (<setting>/<cell>.json) under {args.a}")
    for c in comparisons:
        print(f"{c.name}: {'same' if not c.differences else 'DIFFERS'} (largest |difference| {c.largest:.2e})")
        for line in c.differences[:5]:
            print(f"    {line}")
    differing = sum(bool(c.differences) for c in comparisons)
    print(f"{len(comparisons)} cells, {differing} differ, largest |difference| "
          f"{max(c.largest for c in comparisons):.2e} (tolerance {args.tolerance:g})")
    return 1 if differing else 0


def _export(args) -> int:
    """The study's per-item results as one long table: csv or parquet, written whole or not at all."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.study.export import export_table
    from e2u.study.grid import load_study

    name = load_study(args.study).name if Path(args.study).is_file() else args.study  # a study file or its name
    out = Path(args.out or f"{name}.{args.format}")
    rows = export_table(Path(args.results), name, out, args.format, args.variants)
    print(f"{rows} rows of study {name} written to {out}")
    return 0


def _verbose_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """`-v` accepted after any subcommand too (`e2u study run x.yaml -v`), not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="log what happens (INFO)")
                _verbose_after_subcommands(command)


def _package_version() -> str:
    try:
        return metadata.version("e2u")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return __version__


def _eval(args) -> int:
    """A saved change or a model evaluated on a study's setting, written beside the setting's cells."""
    # the command's work, loaded when it runs (the module docstring says why)
    from e2u.study.evals import evaluate_on_setting
    from e2u.study.grid import load_study

    path, result = evaluate_on_setting(load_study(args.study), args.setting, args.results, change=args.change,
                                       model=args.model, seed=args.seed, name=args.name)
    for split, values in result["summary"]["after"].items():
        print(f"{split:<24} n={values['n']:<4} rouge1 {values['rouge1_recall']:.3f}  refusal {values['refusal_rate']:.3f}")
    print(f"evaluation written to {path}")
    return 0


def _study_command(sub, name: str, help: str, run) -> argparse.ArgumentParser:
    """A subcommand that reads a study file and its results and chapter folders."""
    command = sub.add_parser(name, help=help)
    command.add_argument("study")
    command.add_argument("--results", default="results")
    command.add_argument("--book", default="book")
    command.set_defaults(run=run)
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2u", description="Editing as unlearning: the study runner")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO)")
    parser.add_argument("--version", action="version", version=f"e2u {_package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="convert the embedded model once")
    prepare.add_argument("study", nargs="?", help="a study file: also prepare what its settings need")
    prepare.add_argument("--model", default="smollm2-135m-instruct", help="without a study: the model to convert")
    prepare.add_argument("--results", default="results")
    prepare.add_argument("--install-seconds", default="", help="record this as the install stage (make book)")
    prepare.add_argument("--models-only", action="store_true", help="only make the study's models loadable "
                         "(`study run` does the rest as Dask tasks)")
    prepare.set_defaults(run=_prepare)
    study = sub.add_parser("study", help="run a study")
    study_sub = study.add_subparsers(dest="action", required=True)
    run = _study_command(study_sub, "run", "run every cell not already done", _study_run)
    run.add_argument("--scheduler", default="", help="address of a running Dask scheduler (tcp://HOST:PORT); "
                     "default: a local cluster, one single-threaded worker per core (one per GPU)")
    run.add_argument("--workers", type=int, default=0, help="local cluster on CPU: this many workers (default: cores)")
    run.add_argument("--sequential", action="store_true", help="no Dask: the cells one after another, in this process")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--dashboard", nargs="?", type=int, const=8787, default=None, metavar="PORT",
                     help="start the local cluster's Dask dashboard (default port 8787; 0: any free port) and print "
                     "its address; with --scheduler, print that scheduler's")
    plan = _study_command(study_sub, "plan", "list the tasks `study run` would submit, with their resources",
                          _study_plan)
    plan.add_argument("--gpus", type=int, default=0, help="plan for a cluster with GPU workers")
    book = _study_command(sub, "book", "execute the generated chapters and build the Jupyter Book", _book)
    book.add_argument("--root", default="", help="the Jupyter Book project to build (holds _config.yml, _toc.yml "
                      "and book/; default: the repository)")
    book.add_argument("--no-build", action="store_true", help="only execute the generated chapters")
    book.add_argument("--no-api-chapter", action="store_true", help="leave out the Python API chapter (it runs "
                      "ROME and a baseline on the embedded model: minutes, once per library version)")
    rerun = sub.add_parser("rerun", help="run one chapter again with other parameters, then rebuild the book")
    rerun.add_argument("chapter", help="a cell's chapter, <setting>/<label>-seed<n> (e2u study plan lists them)")
    rerun.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                       help="a cell parameter or a hyper-parameter of its method, and its value (YAML)")
    rerun.add_argument("--study", default="studies/default.yaml")
    rerun.add_argument("--results", default="results")
    rerun.add_argument("--book", default="book")
    rerun.add_argument("--root", default="")
    rerun.add_argument("--no-build", action="store_true", help="only rerun the chapter's notebook")
    rerun.set_defaults(run=_rerun)
    compare = sub.add_parser("compare", help="compare the per-item numbers of two result directories")
    compare.add_argument("a", help="a results directory, e.g. results/default")
    compare.add_argument("b", help="another one, with the same <setting>/<cell>.json files")
    compare.add_argument("--tolerance", type=float, default=1e-6, help="largest absolute difference allowed")
    compare.set_defaults(run=_compare)
    export = sub.add_parser("export", help="a study's per-item results as one long table (csv or parquet)")
    export.add_argument("study", help="a study file, or a study's name (its folder under --results)")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("--out", default="", help="the file to write (default: <study>.<format> here)")
    export.add_argument("--results", default="results")
    export.add_argument("--variants", action="store_true", help="add the reruns beside the study (`e2u rerun`)")
    export.set_defaults(run=_export)
    evaluate = sub.add_parser("eval", help="evaluate a saved change, a model directory or a hub id on a setting")
    evaluate.add_argument("study", help="the study file whose setting gives the data and the evaluation")
    evaluate.add_argument("setting", help="one of the study's settings")
    evaluated = evaluate.add_mutually_exclusive_group(required=True)
    evaluated.add_argument("--change", help="a saved change (<cell>.change.safetensors or <cell>.adaptor.safetensors), "
                           "applied to the setting's model")
    evaluated.add_argument("--model", help="a local model directory or a hub id")
    evaluate.add_argument("--seed", type=int, default=None, help="the seed whose data to use (default: the first)")
    evaluate.add_argument("--name", default="", help="the result's name (default: the change's or model's)")
    evaluate.add_argument("--results", default="results")
    evaluate.set_defaults(run=_eval)
    _verbose_after_subcommands(parser)  # after every subcommand exists
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except E2UError as exc:
        print(f"e2u: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
