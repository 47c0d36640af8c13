"""A study of 8 cells, one cell at a time (the plain runner, two threads per kernel as before) against the
local Dask cluster (one single-threaded worker per core), measured in one run.

The shared work (model, probe answers, the unedited evaluation, key statistics) is done first and
not timed: both runs start from the same cache, so the ratio is the cells' alone. The cells are
small (one probe entity, few value steps and epochs) so that the benchmark takes minutes; the ratio
is about scheduling, not about any method's settings.

    OMP_NUM_THREADS=1 python bench/dask_bench.py [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from e2u.study.cluster import machine_cores
from e2u.study.compare import compare_results
from e2u.study.executor import run_study_on_dask
from e2u.study.grid import load_study
from e2u.study.prepare import prepare_study
from e2u.study.runner import run_study

STUDY = """\
name: dask-bench
model: smollm2-135m-instruct
settings:
  - name: pretrained
    data: {source: probe, n_forget: 1, n_neighbour: 1, seed: 0}
evaluation: {max_new_tokens: 16, batch_size: 16}
seeds: [0, 1]
methods:
  - {name: rome, hparams: {v_num_grad_steps: 8}}
  - {name: memit, hparams: {v_num_grad_steps: 8}}
  - {name: alphaedit, hparams: {v_num_grad_steps: 8}}
  - {name: gradient_ascent, label: ga, hparams: {epochs: 2}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="local cluster size (default: one per core)")
    parser.add_argument("--keep", default="", help="keep the study's results and notebooks here")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="e2u-dask-bench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.yaml").write_text(STUDY)
    study = load_study(root / "study.yaml")
    print(f"{len(study.cells)} cells; {machine_cores()} cores; shared work first (not timed) ...", flush=True)
    for line in prepare_study(study):
        print(f"  {line}", flush=True)

    os.environ["OMP_NUM_THREADS"] = str(machine_cores())  # the kernels of the plain runner: every core, as before
    started = time.perf_counter()
    plain = run_study(study, root / "plain", root / "book-plain")
    plain_s = time.perf_counter() - started
    print(f"one cell at a time ({machine_cores()} threads): {plain_s:.1f} s "
          f"({sum(o.status == 'ran' for o in plain)} ran)", flush=True)

    os.environ["OMP_NUM_THREADS"] = "1"
    started = time.perf_counter()
    outcomes, _ = run_study_on_dask(study, root / "dask", root / "book-dask", workers=args.workers)
    dask_s = time.perf_counter() - started
    print(f"local Dask cluster ({args.workers or machine_cores()} single-threaded workers, start-up included): "
          f"{dask_s:.1f} s ({sum(o.status == 'ran' for o in outcomes)} ran)")
    failed = [o for o in plain + outcomes if o.status == "failed"]
    if failed:
        print("FAILED cells:", [(o.cell_id, o.error) for o in failed])
    largest = max(c.largest for c in compare_results(root / "plain" / study.name, root / "dask" / study.name, 1e-6))
    print(f"speed-up {plain_s / dask_s:.2f}x; largest per-item difference between the two runs {largest:.1e} "
          "(threads differ: the sums round differently)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
