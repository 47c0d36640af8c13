"""Run a study's cells as Dask tasks: the same code on a laptop and on a cluster (DESIGN section 5).

1. Cells whose result file carries their key are `cached` and not submitted.
2. The work they share (`shared_work`) is submitted first, each step once, after the steps it needs; steps
   start before any cell, finetuning first (the longest chain), so that two workers never sit on one chain.
   Jobs are submitted only while a worker thread is free, the highest priority first (`job_priority`), so no
   worker holds a queue while another idles.
3. Every other cell is a task that waits for its setting's last shared step and runs the cell's
   notebook through papermill on a worker (`runner.run_cell_notebook`); results come back as
   files, so a cluster run and a local run build the same book.
4. A cell whose worker died is submitted once more; a second death, or an error in the notebook,
   makes it `failed` with its error. Finished cells are kept whatever happens to the others.
5. The study's scaling points (scaling.py) wait for their model's step and queue behind the cells;
   each runs in fresh processes of its own, so its time and peak memory are its own.

Cells on CUDA ask for the resource `GPU=1`: one cell per GPU at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from distributed import KilledWorker, wait
from tqdm import tqdm

from e2u.cell.params import CellParams
from e2u.errors import E2UError
from e2u.study.cluster import dashboard_address, has_gpu_workers, study_client, worker_threads
from e2u.study.grid import Study, cell_key, is_done, notebook_path, result_path
from e2u.study.priority import STEP_PRIORITY, cost_rank
from e2u.study.run_lock import study_run_lock
from e2u.study.runner import CellOutcome, error_frames, error_line, failure_details, run_cell_notebook
from e2u.study.scaling import is_measured, measure_in_subprocess, scaling_dir
from e2u.study.shared_work import SharedStep, plan_shared_steps, run_shared_step, step_for_cell

RETRIES_AFTER_A_LOST_WORKER = 1


@dataclass
class PlannedCell:
    cell: CellParams
    key: str
    result: Path
    notebook: Path
    needs: str  # the shared step it waits for
    resources: dict = field(default_factory=dict)


@dataclass
class PlannedPoint:
    """A scaling measurement (scaling.py): a method's cost on n forget questions, after its model step."""
    point: object  # scaling.ScalingPoint
    path: Path
    needs: str
    resources: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"scaling/{self.path.stem}"


@dataclass
class Plan:
    steps: list[SharedStep]
    cells: list[PlannedCell]
    cached: list[CellParams]
    points: list[PlannedPoint] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)  # scaling points already measured

    def describe(self) -> list[str]:
        lines = [f"shared  {s.name:<40} after {', '.join(s.after) or '-'}  ({len(s.cells)} cells)" for s in self.steps]
        lines += [f"cell    {p.cell.setting}/{p.cell.cell_id:<32} after {p.needs}  resources {p.resources or '{}'}"
                  for p in self.cells]
        lines += [f"point   {p.name:<32} after {p.needs}  resources {p.resources or '{}'}" for p in self.points]
        lines += [f"cached  {c.setting}/{c.cell_id}" for c in self.cached] + [f"cached  {n}" for n in self.measured]
        return lines


def wants_gpu(cell: CellParams, gpus: bool) -> bool:
    """A cell runs on a GPU when it names CUDA (or `auto`), or names no device and the cluster has GPUs."""
    device = cell.device.lower()
    return device.startswith("cuda") or device == "auto" or (not device and gpus)


def plan_study(study: Study, results_dir: Path, book_dir: Path, gpus: bool) -> Plan:
    """What a run must do: shared steps for the cells not done, and those cells with their resources."""
    pending, cached = [], []
    for cell in study.cells:
        key = cell_key(cell)
        result, notebook = result_path(results_dir, study, cell), notebook_path(book_dir, study, cell)
        (cached if is_done(result, notebook, key) else pending).append((cell, key, result, notebook))
    steps = plan_shared_steps([c for c, *_ in pending])
    cells = [PlannedCell(cell, key, result, notebook, step_for_cell(steps, cell).name,
                         {"GPU": 1} if wants_gpu(cell, gpus) else {})
             for cell, key, result, notebook in pending]
    points, measured = _plan_points(study, results_dir, steps, gpus)
    return Plan(steps, cells, [c for c, *_ in cached], points, measured)


def _plan_points(study: Study, results_dir: Path, steps: list[SharedStep], gpus: bool):
    """The scaling points not yet measured, each after its model's step (added when no cell needs it)."""
    points, measured = [], []
    for point in study.scaling:
        path = scaling_dir(results_dir, study.name) / point.file_name
        if is_measured(path, point.key):
            measured.append(f"scaling/{path.stem}")
            continue
        needs = f"model {point.model}"
        if not any(s.name == needs for s in steps):
            stand_in = CellParams(model=point.model, device=point.device, dtype=point.dtype)
            steps.insert(0, SharedStep("model", needs, (stand_in,)))
        device = CellParams(model=point.model, device=point.device)
        points.append(PlannedPoint(point, path, needs, {"GPU": 1} if wants_gpu(device, gpus) else {}))
    return points, measured


def _run_cell_task(cell_json: str, result: str, notebook: str, key: str) -> tuple[float, str, str]:
    """On a worker: one cell's notebook. Returns (seconds, error, its details: `runner.failure_details`); an error
    is the notebook's, not the worker's."""
    started = time.perf_counter()
    cell = CellParams.from_json(cell_json)
    Path(result).unlink(missing_ok=True)
    try:
        run_cell_notebook(cell, Path(result), Path(notebook), key)
        return time.perf_counter() - started, "", ""
    except Exception as exc:  # the cell failed; the worker is fine: no retry, report it
        Path(result).unlink(missing_ok=True)
        return time.perf_counter() - started, error_line(exc), failure_details(exc, Path(notebook))


@dataclass
class _Job:
    """A step or a cell in flight, and how many times it was submitted."""
    name: str
    step: SharedStep | None = None
    cell: PlannedCell | None = None
    point: PlannedPoint | None = None
    attempts: int = 0


def run_plan(client, plan: Plan, progress: bool = True) -> tuple[list[CellOutcome], list[dict]]:
    """Submit the plan to `client` and wait for every cell; returns the cell outcomes and the shared steps' logs.

    Dependencies are kept here, not in the task graph: a job whose worker died is resubmitted alone,
    and a step's cells are submitted once the step has succeeded (or failed with its error)."""
    gpu = any(p.resources for p in plan.cells + plan.points)
    if gpu and not _has_gpu(client):
        names = [f"{p.cell.setting}/{p.cell.cell_id}" for p in plan.cells if p.resources] + \
                [p.name for p in plan.points if p.resources]
        raise E2UError(f"cells {names[:3]}{' ...' if len(names) > 3 else ''} run on CUDA but no worker of the "
                       "cluster offers the resource GPU; start GPU workers with `--resources GPU=1`")
    resources = {"GPU": 1} if gpu else None

    def submit(job: _Job):
        job.attempts += 1
        key = f"{job.name}-{id(plan)}-{job.attempts}".replace(" ", "_")
        if job.step is not None:
            return client.submit(run_shared_step, job.step, key=key, resources=resources,
                                 priority=job_priority(job), pure=False)
        if job.point is not None:
            return client.submit(_measure_point_task, job.point.point, str(job.point.path), key=key,
                                 priority=job_priority(job), resources=job.point.resources or None, pure=False)
        p = job.cell
        return client.submit(_run_cell_task, p.cell.to_json(), str(p.result), str(p.notebook), p.key, key=key,
                             resources=p.resources or None, priority=job_priority(job), pure=False)

    running: dict = {}  # future -> the job it runs
    ready: list[_Job] = []  # released, not yet submitted: at most one job per worker thread is in flight

    def fill() -> None:
        """Submit the ready jobs, highest priority first, while a worker thread is free: Dask places a task on a
        worker when it is submitted, and with all of them submitted at once one worker kept a queue while the
        other idled (230 of 1,380 worker-seconds idle in a quick study on two workers)."""
        ready.sort(key=job_priority, reverse=True)
        threads = worker_threads(client)  # one question to the scheduler per fill, not per job
        while ready and len(running) < threads:
            job = ready.pop(0)
            running[submit(job)] = job

    done: set[str] = set()  # the steps that succeeded
    failed: set[str] = set()  # the jobs failed because a step they need failed

    def waiting_for(step_name: str) -> list[_Job]:
        """The jobs that need `step_name` (a step may need several)."""
        return [_Job(f"shared {s.name}", step=s) for s in plan.steps if step_name in s.after] + \
               [_Job(f"cell {p.cell.setting}/{p.cell.cell_id}", cell=p) for p in plan.cells if p.needs == step_name] + \
               [_Job(p.name, point=p) for p in plan.points if p.needs == step_name]

    def release(step_name: str) -> list[_Job]:
        """The jobs that waited for `step_name` and need nothing else that is not done."""
        return [job for job in waiting_for(step_name) if job.step is None or set(job.step.after) <= done]

    def fail_all(job: _Job, why: str) -> list[CellOutcome]:
        """A step failed: every cell that needs it, directly or through a later step, fails with its error (once,
        when it needs two failed steps)."""
        if job.name in failed:
            return []
        failed.add(job.name)
        if job.step is None:
            return [CellOutcome(_job_id(job), "failed", 0.0, why, attempts=job.attempts)]
        return [o for waiting in waiting_for(job.step.name) for o in fail_all(waiting, why)]

    ready += [_Job(f"shared {s.name}", step=s) for s in plan.steps if not s.after]
    fill()
    outcomes = [CellOutcome(c.cell_id, "cached", 0.0) for c in plan.cached] + \
               [CellOutcome(name, "cached", 0.0) for name in plan.measured]
    steps: list[dict] = []
    counts = {"done": 0, "failed": 0, "cached": len(outcomes)}
    bar = tqdm(total=len(plan.cells) + len(plan.points) + len(outcomes), initial=len(outcomes), desc="cells",
               unit="cell", disable=not progress)
    while running or ready:
        try:
            finished, _ = wait(list(running), timeout=5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            finished = []
        for future in finished:
            job = running.pop(future)
            value, error, lost = _collect(future)
            if lost and job.attempts <= RETRIES_AFTER_A_LOST_WORKER:
                ready.append(job)
                continue
            if lost:
                error = f"its worker died {job.attempts} times while running it"
            new = []
            if job.step is not None and not error:
                steps.append(value)
                done.add(job.step.name)
                ready.extend(release(job.step.name))
            elif job.step is not None:
                new = fail_all(job, f"shared step {job.step.name!r} failed: {error}")
            else:
                seconds, cell_error, details = value if not error else (0.0, error, "")
                new = [CellOutcome(_job_id(job), "failed" if cell_error else "ran", seconds, cell_error,
                                   attempts=job.attempts, details=details)]
            for outcome in new:
                counts["done" if outcome.status == "ran" else "failed"] += 1
            outcomes += new
            bar.update(len(new))
        fill()
        bar.set_postfix(running=_running_cells(client, running), **counts, refresh=True)
    bar.close()
    return outcomes, steps


def job_priority(job: _Job) -> int:
    """Higher starts first: steps (finetuning first), then cells by `cost_rank`, then scaling points (behind the
    cells; among them the largest first, so that none runs alone at the end)."""
    if job.step is not None:
        return STEP_PRIORITY[job.step.kind]
    if job.point is not None:
        return job.point.point.n_forget - 10_000
    return cost_rank(job.cell.cell)


def _job_id(job: _Job) -> str:
    return job.cell.cell.cell_id if job.cell is not None else job.point.name


def _measure_point_task(point, path: str) -> tuple[float, str, str]:
    """On a worker: one scaling point, in fresh processes of its own (its peak memory is its own); returns
    (seconds, error, the error's last frames)."""
    started = time.perf_counter()
    try:
        measure_in_subprocess(point, Path(path))
        return time.perf_counter() - started, "", ""
    except Exception as exc:  # the point failed; the worker is fine
        return time.perf_counter() - started, error_line(exc), error_frames(exc)


def _collect(future) -> tuple[object, str, bool]:
    """(value, error, worker lost) of a finished future."""
    try:
        return future.result(), "", False
    except KilledWorker:
        return None, "", True
    except Exception as exc:
        return None, error_line(exc), False


def _running_cells(client, running: dict) -> int:
    """How many of the submitted jobs workers are executing now: a worker holds more than it runs (its
    queue), so each counts at most its thread count."""
    keys = {f.key for f, job in running.items() if job.step is None}
    try:
        threads = {address: w.get("nthreads", 1) for address, w in client.scheduler_info()["workers"].items()}
        return sum(min(len(keys & set(held)), threads.get(address, 1))
                   for address, held in client.processing().items())
    except Exception:  # the count is cosmetic; never let it stop the run
        return 0


def _has_gpu(client) -> bool:

    return has_gpu_workers(client)


def run_study_on_dask(study: Study, results_dir: Path, book_dir: Path, scheduler: str = "", workers: int = 0,
                      progress: bool = True, dashboard: int | None = None) -> tuple[list[CellOutcome], list[dict]]:
    """`e2u study run`: hold the run lock, plan, and run the plan on a local cluster or on `scheduler` (with
    `dashboard`, a port: the local cluster's dashboard, its address printed; a remote one's is printed too)."""
    results_dir, book_dir = Path(results_dir).resolve(), Path(book_dir).resolve()  # workers run elsewhere
    with study_run_lock(book_dir, results_dir / study.name):
        with study_client(scheduler, workers, dashboard) as client:
            if dashboard is not None:
                print(f"Dask dashboard: {dashboard_address(client)}", flush=True)
            plan = plan_study(study, results_dir, book_dir, has_gpu_workers(client))
            if not plan.cells and not plan.points:
                return [CellOutcome(c.cell_id, "cached", 0.0) for c in plan.cached] + \
                       [CellOutcome(name, "cached", 0.0) for name in plan.measured], []
            return run_plan(client, plan, progress)
