"""The Dask cluster a study runs on: a local one sized to the machine, or an existing one by address.

Local, CPU only: one single-threaded worker process per core (measured on a 2-core machine: one
thread per process is faster than two threads in one). Local with GPUs: one worker per GPU, each
seeing only its own device (`CUDA_VISIBLE_DEVICES`) and offering the resource `GPU=1`, which every
cell on CUDA asks for. `--scheduler tcp://host:8786` connects to a cluster started elsewhere (for
example by dask-jobqueue on Slurm: see the README).

A worker that dies in the middle of a task is not retried by the local scheduler
(`allowed-failures: 0`): the executor retries the cell once itself, so the rule is the same on any
cluster (a remote scheduler may add its own retries, by its configuration).

Local workers start without Dask's `MALLOC_TRIM_THRESHOLD_=65536` (its Nanny's pre-spawn environment): every
cell's kernel inherits its worker's environment, and with that threshold glibc hands freed memory back at once and
faults it in again, which made a quick-study cell 26% slower (40.8 s against 32.3 s, sys time 7.9 s against 1.7 s;
`bench/kernel_environment_bench.py`). A value the user exported is still passed on.

Dask's dashboard is off by default; `e2u study run --dashboard [PORT]` starts the local scheduler's (a
port of 0: any free one) and the run prints its address (`dashboard_address`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import contextmanager
from typing import Iterator

import dask
import torch
from distributed import Client, Nanny, Scheduler, SpecCluster

from e2u.errors import E2UError

CONNECT_TIMEOUT_S = 8  # the message comes within 10 s
# Dask's setting that the Nanny exports to its worker, and so to every kernel a cell starts (None in the config: unset)
KERNEL_SLOWING_ENVIRON = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_gpus() -> int:

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_specs(cores: int, gpus: int, memory_bytes: int | None = None) -> dict:
    """SpecCluster worker specs: one per GPU (GPU=1, its share of the cores), else one per core."""
    count = gpus or cores
    threads = max(1, cores // gpus) if gpus else 1
    specs = {}
    for index in range(count):
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        options = {"nthreads": 1, "env": env, "memory_limit": (memory_bytes // count) if memory_bytes else "auto",
                   "silence_logs": logging.ERROR, "dashboard": False}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index)
            options["resources"] = {"GPU": 1}
        specs[f"worker-{index}"] = {"cls": Nanny, "options": options}
    return specs


@contextmanager
def study_client(scheduler: str = "", workers: int = 0, dashboard: int | None = None) -> Iterator:
    """A connected `distributed.Client`: to `scheduler` if given, else to a new local cluster
    (`workers` > 0 overrides its size on CPU; `dashboard`, a port, starts its dashboard)."""
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise E2UError(f"could not reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s "
                           f"({type(exc).__name__}); is it running, and is the address tcp://HOST:PORT?") from None
        with client:
            yield client
        return
    with local_cluster(workers, dashboard) as cluster, Client(cluster) as client:
        yield client


def dashboard_address(client) -> str:
    """Where the cluster's dashboard answers (`/status`), with a note when its graphical pages cannot be drawn
    here. (Dask's scheduler always serves its health and info routes over HTTP; the dashboard's pages only when
    asked for.)"""
    note = "" if importlib.util.find_spec("bokeh") else \
        " (bokeh is not installed: its pages say so, the /info pages work; `pip install bokeh` draws the dashboard)"
    return client.dashboard_link + note


@contextmanager
def local_cluster(workers: int = 0, dashboard: int | None = None) -> Iterator:
    """A cluster on this machine: one worker per GPU, else `workers` (default: one per core) single-threaded ones;
    with `dashboard` (a port, 0: any free one), the scheduler serves Dask's dashboard there."""
    gpus = local_gpus()
    cores = workers if workers and not gpus else machine_cores()
    quiet = logging.getLogger("distributed")  # the scheduler runs in this process: its start-up lines are noise
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # a fresh route list: without bokeh, a scheduler serving the dashboard appends its "install bokeh" page to
        # the list in Dask's configuration, and every later scheduler of this process would serve it too
        routes = [r for r in dask.config.get("distributed.scheduler.http.routes") if not r.endswith("missing_bokeh")]
        with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.http.routes": routes,
                              KERNEL_SLOWING_ENVIRON: None}):
            served = {"dashboard": True, "dashboard_address": f":{dashboard}"} if dashboard is not None else {}
            scheduler = {"cls": Scheduler, "options": {"dashboard": False, **served}}
            with SpecCluster(workers=worker_specs(cores, gpus), scheduler=scheduler,
                             silence_logs=logging.ERROR) as cluster:
                yield cluster
    finally:
        quiet.setLevel(level)


def has_gpu_workers(client) -> bool:
    return any((w.get("resources") or {}).get("GPU") for w in client.scheduler_info()["workers"].values())


def worker_threads(client) -> int:
    """How many tasks the cluster runs at once (its workers' threads; workers may join or leave), at least one."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # the scheduler did not answer this time: keep one job in flight
        return 1
