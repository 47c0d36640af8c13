"""Every editor and every paper baseline on one setting and one seed, on one GPU in bf16, beside the CPU run.

The cells are the study's plain ones for `--setting` and `--seed` (no chunks, no merging, the fixed refusal):
ROME, MEMIT, AlphaEdit, GRACE, WISE, GA, GD, KL and DPO in studies/default.yaml. Each runs as `e2u study run`
runs it, on `cuda` in `--dtype`, and its result file is written under OUTPUT/<setting>/ in the study's layout, so
that `e2u compare CPU_RESULTS OUTPUT` compares every per-item number. The figures (seconds per stage, peak
memory, the GPU/CPU ratio of each stage when `--cpu-results` holds the CPU run's result files, and the
comparison's largest differences and greedy answers in common) go to OUTPUT/gpu_check.json; copied into
`results/` (or `results/<study>/`), the cost chapter shows them.

    python bench/gpu_check.py OUTPUT [--study studies/default.yaml] [--setting pretrained] [--seed 0]
                              [--dtype bfloat16] [--cpu-results results/default]

Exits 2, saying why, when torch sees no CUDA device: the figures are a GPU's or none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from e2u.cell.run import run_cell
from e2u.files import write_json_atomic
from e2u.methods import get_method
from e2u.study.compare import compare_results
from e2u.study.grid import load_study

STAGES = ("load", "evaluate_before", "unlearn", "evaluate_after")


def plain_cells(study, setting: str, seed: int) -> list:
    """The setting's cells of the paper's methods at `seed` with the paper's protocol: one chunk, no merging."""
    return [c for c in study.cells if c.setting == setting and c.seed == seed and c.chunks == 1
            and not c.merge_group and c.refusal == "fixed" and get_method(c.method).in_paper]


def greedy_answers_in_common(cpu_file: Path, gpu_file: Path) -> dict:
    """How many of the after-unlearning greedy answers the two runs share, of how many."""
    cpu, gpu = (json.loads(p.read_text())["after"] for p in (cpu_file, gpu_file))
    pairs = [(a.get("answer"), b.get("answer")) for split in cpu for a, b in zip(cpu[split], gpu.get(split, []))]
    return {"same": sum(a == b for a, b in pairs), "of": len(pairs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="a directory for the result files and gpu_check.json")
    parser.add_argument("--study", default="studies/default.yaml")
    parser.add_argument("--setting", default="pretrained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--cpu-results", default="", help="the CPU run's results/<study> directory, to compare with")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False); "
              f"torch {torch.__version__} built with CUDA {torch.version.cuda}; this check measures a GPU or nothing",
              file=sys.stderr)
        return 2
    cells = plain_cells(load_study(args.study), args.setting, args.seed)
    if not cells:
        print(f"gpu_check: {args.study} has no plain cells of the paper's methods in setting {args.setting!r} at "
              f"seed {args.seed}", file=sys.stderr)
        return 2
    output, cpu_dir = Path(args.output), Path(args.cpu_results) if args.cpu_results else None
    figures = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "dtype": args.dtype,
               "setting": args.setting, "seed": args.seed, "cells": {}}
    print(f"{figures['device']}, torch {torch.__version__}, {args.dtype}, {len(cells)} cells")
    print(f"{'cell':<28}" + "".join(f"{s:>16}" for s in STAGES) + f"{'peak GiB':>10}{'GPU/CPU':>9}")
    for cell in cells:
        cell = dataclasses.replace(cell, device="cuda", dtype=args.dtype)
        name = f"{cell.setting}/{cell.cell_id}.json"
        torch.cuda.reset_peak_memory_stats()  # each cell's own peak (the cells share this process)
        started = time.perf_counter()
        result = run_cell(cell, output / name)
        timings, entry = result["timings_s"], {}
        entry.update(timings_s=timings, total_s=round(time.perf_counter() - started, 2),
                     peak_memory_gb=result["peak_memory_gb"], peak_memory_kind=result["peak_memory_kind"])
        ratio = float("nan")
        if cpu_dir is not None and (cpu_dir / name).is_file():
            cpu_timings = json.loads((cpu_dir / name).read_text())["timings_s"]
            entry["gpu_over_cpu"] = {s: round(timings[s] / cpu_timings[s], 4) for s in STAGES
                                     if cpu_timings.get(s) and s in timings}
            ratio = sum(timings.get(s, 0) for s in STAGES) / max(sum(cpu_timings.get(s, 0) for s in STAGES), 1e-9)
            entry["gpu_over_cpu_total"] = round(ratio, 4)
            entry["greedy_answers_in_common"] = greedy_answers_in_common(cpu_dir / name, output / name)
        figures["cells"][name] = entry
        print(f"{cell.setting + '/' + cell.cell_id:<28}" + "".join(f"{timings.get(s, float('nan')):16.1f}" for s in STAGES)
              + f"{result['peak_memory_gb']:10.2f}{ratio:9.3f}", flush=True)
        write_json_atomic(output / "gpu_check.json", figures)  # what is measured so far survives a later failure
    if cpu_dir is not None:
        figures["comparison"] = {c.name: {"largest_difference": c.largest, "differences": len(c.differences)}
                                 for c in compare_results(output, cpu_dir, tolerance=1e-6) if c.name in figures["cells"]}
    write_json_atomic(output / "gpu_check.json", figures)
    print(f"figures written to {output / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
