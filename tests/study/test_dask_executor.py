"""The Dask executor: the plan, a two-worker local cluster against the sequential runner, a worker killed
mid-cell, an unreachable scheduler, the run lock and the temporaries of killed runs."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from test_study_end_to_end import tiny_study, write_tiny_study  # noqa: F401 (a fixture)

from e2u.errors import E2UError
from e2u.study.executor import plan_study, run_plan
from e2u.study.grid import load_study

ROOT = Path(__file__).resolve().parents[2]


def test_the_plan_shares_each_setting_step_once_and_editors_wait_for_statistics(tiny_study):
    study, root = tiny_study
    plan = plan_study(study, root / "results", root / "book", gpus=False)
    assert [(s.kind, s.after) for s in plan.steps] == [
        ("model", ()), ("setting", (f"model {study.cells[0].model}",)), ("statistics", ("setting pretrained",))]
    needs = {p.cell.method: p.needs for p in plan.cells}
    assert needs == {"rome": "statistics pretrained", "gradient_ascent": "setting pretrained"}
    assert all(p.resources == {} for p in plan.cells) and plan.cached == []


def test_the_paper_scale_study_plans_every_cell_on_a_gpu_without_one():
    study = load_study(ROOT / "studies" / "paper-scale.yaml")
    plan = plan_study(study, ROOT / "results", ROOT / "book", gpus=True)
    assert len(plan.cells) == len(study.cells) >= 8
    assert all(p.resources == {"GPU": 1} for p in plan.cells)
    settings = {s.cells[0].setting for s in plan.steps if s.kind == "setting"}
    assert settings == {c.setting for c in study.cells}


def test_an_unreachable_scheduler_is_a_clear_error_within_ten_seconds():
    from e2u.study.cluster import study_client

    started = time.perf_counter()
    with pytest.raises(E2UError, match="could not reach the Dask scheduler at tcp://127.0.0.1:9"):
        with study_client("tcp://127.0.0.1:9"):
            pass
    assert time.perf_counter() - started < 10


def test_a_second_run_is_refused_while_one_holds_the_lock_and_leftovers_are_removed(tmp_path):
    from e2u.study.run_lock import study_run_lock

    book, results = tmp_path / "book", tmp_path / "results" / "s"
    (book / "runs" / "s" / "pretrained").mkdir(parents=True)
    (results / "pretrained").mkdir(parents=True)
    left = [book / "runs" / "s" / "pretrained" / ".rome-seed0.ipynb.k1x9.ipynb",
            results / "pretrained" / ".rome-seed0.json.a8b7.json"]
    kept = [book / "runs" / "s" / "pretrained" / "rome-seed0.ipynb", results / "pretrained" / "rome-seed0.json"]
    for path in left + kept:
        path.write_text("{}")
    with study_run_lock(book, results) as removed:
        assert sorted(removed) == sorted(left) and all(p.exists() for p in kept)
        with pytest.raises(E2UError, match="another `e2u study run`"):
            with study_run_lock(book, results):
                pass
    with study_run_lock(book, results) as removed:  # released when the first run ended
        assert removed == []


def _kill_the_first_worker_that_runs_a_cell(client, killed: list, stop: threading.Event):
    """SIGKILL the worker process executing a cell a few seconds after the cell started (its notebook running)."""
    seen = {}
    while not stop.is_set() and not killed:
        for worker, keys in client.processing().items():
            if any(str(k).startswith("cell_") for k in keys):
                seen.setdefault(worker, time.perf_counter())
                if time.perf_counter() - seen[worker] > 4:
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(worker)
                    return
        time.sleep(0.2)


@pytest.mark.slow
def test_two_workers_give_the_sequential_results_and_a_killed_worker_means_a_retry(tmp_path, monkeypatch):
    """One run on a two-worker local cluster with a worker SIGKILLed mid-cell; its results, per item,
    equal the sequential runner's."""
    from distributed import Client

    from e2u.study.cluster import local_cluster
    from e2u.study.compare import compare_results
    from e2u.study.runner import run_study

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernels of both runs: the same arithmetic
    study = load_study(write_tiny_study(tmp_path))
    sequential = run_study(study, tmp_path / "sequential", tmp_path / "book-sequential")
    assert [o.status for o in sequential] == ["ran", "ran"]

    killed, stop = [], threading.Event()
    with local_cluster(workers=2) as cluster, Client(cluster) as client:
        plan = plan_study(study, (tmp_path / "dask").resolve(), (tmp_path / "book-dask").resolve(), gpus=False)
        killer = threading.Thread(target=_kill_the_first_worker_that_runs_a_cell, args=(client, killed, stop))
        killer.start()
        try:
            outcomes, steps = run_plan(client, plan, progress=False)
        finally:
            stop.set()
            killer.join()
    assert killed, "no worker was running a cell long enough to be killed"
    assert sorted(o.status for o in outcomes) == ["ran", "ran"], [o.error for o in outcomes]
    assert sorted(o.attempts for o in outcomes) == [1, 2]  # the killed cell ran once more, the other once
    assert [s["step"] for s in steps][:1] == [f"model {study.cells[0].model}"]
    comparisons = compare_results(tmp_path / "sequential" / "tiny", tmp_path / "dask" / "tiny", 1e-6)
    assert len(comparisons) == 2 and all(not c.differences for c in comparisons), \
        [c.differences[:3] for c in comparisons]


@pytest.mark.slow
def test_a_study_runs_on_an_existing_scheduler_given_by_address(tmp_path, monkeypatch):
    """`--scheduler`: a `dask scheduler` and one `dask worker` started by hand, as on a cluster."""
    import socket
    import subprocess
    import sys

    from e2u.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)]
    try:
        processes.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--no-dashboard"], env=env, stderr=subprocess.DEVNULL))
        study_file = write_tiny_study(tmp_path)
        assert main(["study", "run", str(study_file), "--results", str(tmp_path / "results"), "--book",
                     str(tmp_path / "book"), "--scheduler", address, "--no-progress"]) == 0
        for name in ("rome-seed0", "ga-seed0"):
            assert (tmp_path / "results" / "tiny" / "pretrained" / f"{name}.json").is_file()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def test_scaling_points_wait_for_their_model_and_are_planned_even_when_every_cell_is_done(tiny_study):
    study, root = tiny_study
    study.source.write_text(study.source.read_text() + "scaling: {methods: [rome], n_forget: [2, 4]}\n")
    study = load_study(study.source)
    plan = plan_study(study, root / "results", root / "book", gpus=False)
    assert [(p.name, p.needs) for p in plan.points] == [
        ("scaling/rome-n2-seed0", f"model {study.cells[0].model}"), ("scaling/rome-n4-seed0", f"model {study.cells[0].model}")]
    only_points = plan_study(type(study)(study.name, (), study.source, study.scaling), root / "results", root / "book",
                             gpus=False)
    assert [s.kind for s in only_points.steps] == ["model"] and len(only_points.points) == 2


def test_a_step_starts_after_every_step_it_needs_and_their_failure_fails_its_cells_once(monkeypatch, tmp_path):
    """Finetuning's two models are steps side by side; a setting needs both. When one fails, the setting never
    starts and its cell fails once, with the step's error."""
    from distributed import Client

    from e2u.cell.params import CellParams
    from e2u.study import executor
    from e2u.study.executor import Plan, PlannedCell
    from e2u.study.shared_work import SharedStep

    log = tmp_path / "events"  # the tasks run on copies of these functions: they write what they do here

    def record(kind, name):
        with log.open("a") as handle:
            handle.write(f"{kind} {name} {time.perf_counter()}\n")

    def fake_step(step):
        record("start", step.name)
        time.sleep(0.3 if step.name == "target" else 0.05)
        if step.name == "retain" and (tmp_path / "fail").exists():
            raise RuntimeError("no disk left")
        record("end", step.name)
        return {"step": step.name, "seconds": 0.0, "lines": []}

    def fake_cell(cell_json, result, notebook, key):
        record("cell", key)
        return 0.0, "", ""

    monkeypatch.setattr(executor, "run_shared_step", fake_step)
    monkeypatch.setattr(executor, "_run_cell_task", fake_cell)
    cell = CellParams(data_source="mini", method="gradient_ascent")
    steps = [SharedStep("finetune", "target", (cell,)), SharedStep("finetune", "retain", (cell,)),
             SharedStep("setting", "setting", (cell,), after=("target", "retain"))]
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        for fail in (False, True):
            log.unlink(missing_ok=True)
            if fail:
                (tmp_path / "fail").touch()
            plan = Plan(steps, [PlannedCell(cell, "k", Path("r.json"), Path("n.ipynb"), "setting")], [])
            outcomes, logs = run_plan(client, plan, progress=False)
            events = [(kind, name, float(t)) for kind, name, t in (line.split() for line in log.read_text().splitlines())]
            ended = {name: t for kind, name, t in events if kind == "end"}
            started = {name: t for kind, name, t in events if kind == "start"}
            if not fail:
                assert [o.status for o in outcomes] == ["ran"]
                assert started["setting"] >= max(ended["target"], ended["retain"])
                assert started["retain"] < ended["target"]  # side by side on the two workers
            else:
                assert [(o.status, "no disk left" in o.error) for o in outcomes] == [("failed", True)]
                assert "setting" not in started and not [e for e in events if e[0] == "cell"]


def _environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def test_local_workers_leave_out_dasks_trim_threshold_that_slows_every_cells_kernel(monkeypatch):
    """The Nanny exports MALLOC_TRIM_THRESHOLD_=65536 by default and each cell's kernel inherits its worker's
    environment; the local cluster leaves it out, unless the user exported it."""
    import dask
    from distributed import Client

    from e2u.study.cluster import local_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 65536}):  # Dask's default
        with local_cluster(workers=1) as cluster, Client(cluster) as client:
            assert client.submit(_environment_variable, "MALLOC_TRIM_THRESHOLD_", pure=False).result() is None
            assert client.submit(_environment_variable, "OMP_NUM_THREADS", pure=False).result() == "1"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")  # the user's own value is passed on
    with local_cluster(workers=1) as cluster, Client(cluster) as client:
        assert client.submit(_environment_variable, "MALLOC_TRIM_THRESHOLD_", pure=False).result() == "131072"


class _FinishedFuture:
    """What the fake client hands back: a task that has run."""
    def __init__(self, key: str, value):
        self.key, self._value = key, value

    def result(self):
        return self._value


class _OneWorkerThreadPerSlotClient:
    """A client of `threads` worker threads that records how many submitted jobs were unfinished at each submit."""
    def __init__(self, threads: int):
        self.threads, self.submitted, self.finished, self.in_flight = threads, [], set(), []

    def nthreads(self):
        return {f"worker-{i}": 1 for i in range(self.threads)}

    def submit(self, function, *arguments, key, priority, **options):
        value = {"step": arguments[0].name, "seconds": 0.0, "lines": []} if function.__name__ == "run_shared_step" \
            else (1.0, "", "")
        self.submitted.append((key, priority))
        self.in_flight.append(len(self.submitted) - len(self.finished))
        return _FinishedFuture(key, value)


def test_jobs_are_submitted_only_while_a_worker_thread_is_free_highest_priority_first(tiny_study, monkeypatch):
    """Dask places a task when it is submitted: with every released cell submitted at once, one worker kept a queue
    while the other idled. The executor holds them back until a thread is free, the costliest first."""
    from e2u.study import executor

    study, root = tiny_study
    plan = plan_study(study, root / "results", root / "book", gpus=False)
    client = _OneWorkerThreadPerSlotClient(threads=1)

    def first_completed(futures, timeout, return_when):  # the oldest unfinished job ends first
        oldest = min(futures, key=lambda f: [k for k, _ in client.submitted].index(f.key))
        client.finished.add(oldest.key)
        return {oldest}, set(futures) - {oldest}

    monkeypatch.setattr(executor, "wait", first_completed)
    outcomes, steps = run_plan(client, plan, progress=False)
    assert sorted(o.status for o in outcomes) == ["ran", "ran"]
    assert [s["step"] for s in steps] == [s.name for s in plan.steps]
    assert max(client.in_flight) == 1  # one thread: never a second job waiting on a worker
    cells = [priority for key, priority in client.submitted if key.startswith("cell")]
    assert cells == sorted(cells, reverse=True) and cells[0] > cells[-1]  # ROME (ranked 1) before GA (0)
