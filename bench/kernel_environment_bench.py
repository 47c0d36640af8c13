"""One study cell's notebook as a Dask worker used to start its kernel, against how it starts it now.

Before: the kernel inherited Dask's `MALLOC_TRIM_THRESHOLD_=65536` (its Nanny's pre-spawn environment: glibc hands
freed memory back to the system at once and faults it in again) and papermill ended it with a shutdown request it
then waited on. Now: the local cluster leaves the variable out (`study.cluster.KERNEL_SLOWING_ENVIRON`) and the
kernel is ended at once (`study.runner.KERNEL_SHUTDOWN`). The same cell (the quick study's pretrained gradient
ascent, its shared steps done first and cached) runs through papermill both ways, rounds alternating the order;
the fastest of each counts. Prints seconds, user and system CPU time, and the ratio.

    OMP_NUM_THREADS=1 python bench/kernel_environment_bench.py [--rounds 2] [--study studies/quick.yaml]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import papermill

from e2u.study.grid import TEMPLATE, cell_key, load_study
from e2u.study.runner import KERNEL_SHUTDOWN, notebook_parameters
from e2u.study.shared_work import plan_shared_steps, run_shared_step

DASK_TRIM = "65536"  # distributed.nanny.pre-spawn-environ's MALLOC_TRIM_THRESHOLD_


def run_cell(cell, trim: str | None, shutdown: str, folder: Path) -> dict:
    """The cell's notebook once, its kernel started with `trim` (None: unset) and ended by `shutdown`; wall seconds
    and the kernel's CPU seconds (the children's rusage)."""
    saved = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    if trim is not None:
        os.environ["MALLOC_TRIM_THRESHOLD_"] = trim
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(TEMPLATE), str(folder / "cell.ipynb"), kernel_name="python3",
                                   parameters=notebook_parameters(cell, folder / "cell.json", cell_key(cell)),
                                   progress_bar=False, cwd=str(TEMPLATE.parent), shutdown_kernel=shutdown)
    finally:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        if saved is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = saved
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seconds": time.perf_counter() - started, "user": after.ru_utime - before.ru_utime,
            "system": after.ru_stime - before.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--study", default="studies/quick.yaml")
    parser.add_argument("--setting", default="pretrained")
    parser.add_argument("--method", default="gradient_ascent")
    args = parser.parse_args()
    study = load_study(args.study)
    cell = next((c for c in study.cells if c.setting == args.setting and c.method == args.method), None)
    if cell is None:
        parser.error(f"{args.study} has no cell of method {args.method!r} in setting {args.setting!r}")
    for step in plan_shared_steps([cell]):  # cached after the first time: a study of the same file shares them
        print(f"shared step {step.name}: {run_shared_step(step)['seconds']} s", flush=True)
    ways = {"before (Dask's trim threshold, graceful shutdown)": (DASK_TRIM, "graceful"),
            f"now (no threshold, {KERNEL_SHUTDOWN} shutdown)": (None, KERNEL_SHUTDOWN)}
    best = {name: None for name in ways}
    with tempfile.TemporaryDirectory(prefix="e2u-kernel-bench-") as folder:
        for k in range(args.rounds):
            for name in list(ways) if k % 2 == 0 else list(ways)[::-1]:
                measured = run_cell(cell, *ways[name], Path(folder))
                print(f"round {k + 1}, {name}: {measured['seconds']:.1f} s (user {measured['user']:.1f} s, "
                      f"system {measured['system']:.1f} s)", flush=True)
                if best[name] is None or measured["seconds"] < best[name]["seconds"]:
                    best[name] = measured
    old, new = (best[name] for name in ways)
    print(f"{args.setting}/{cell.cell_id}: before {old['seconds']:.1f} s (system {old['system']:.1f} s), now "
          f"{new['seconds']:.1f} s (system {new['system']:.1f} s): {old['seconds'] / new['seconds']:.2f}x faster")


if __name__ == "__main__":
    main()
