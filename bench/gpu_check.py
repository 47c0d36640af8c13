"""Run the embedded study's heaviest cells on one GPU in bf16; print per-stage seconds and peak memory.

The cells: finetuned alphaedit-batch and rome-sequential, pretrained memit-batch (studies/default.yaml).
The finetuned setting's target and retain models are trained on first use (counted in "load").

    python bench/gpu_check.py [results/gpu_check.json] [--study studies/default.yaml] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

HEAVIEST = (("finetuned", "alphaedit-batch"), ("finetuned", "rome-sequential"), ("pretrained", "memit-batch"))
STAGES = ("load", "evaluate_before", "unlearn", "evaluate_after")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="results/gpu_check.json")
    parser.add_argument("--study", default="studies/default.yaml")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False); "
              f"torch {torch.__version__} built with CUDA {torch.version.cuda}", file=sys.stderr)
        return 2

    from e2u.cell.run import run_cell
    from e2u.files import write_json_atomic
    from e2u.study.grid import load_study

    cells = {(c.setting, c.label): c for c in load_study(args.study).cells}
    missing = [f"{s}/{l}" for s, l in HEAVIEST if (s, l) not in cells]
    if missing:
        print(f"gpu_check: {args.study} has no cell(s) {missing}", file=sys.stderr)
        return 2
    figures = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "dtype": args.dtype, "cells": {}}
    print(f"{figures['device']}, torch {torch.__version__}, {args.dtype}")
    print(f"{'cell':<28}" + "".join(f"{s:>16}" for s in STAGES) + f"{'peak GiB':>10}")
    for setting, label in HEAVIEST:
        cell = dataclasses.replace(cells[setting, label], device="cuda", dtype=args.dtype)
        torch.cuda.reset_peak_memory_stats()  # each cell's own peak (the cells share this process)
        started = time.perf_counter()
        result = run_cell(cell)
        timings = result["timings_s"]
        figures["cells"][f"{setting}/{label}"] = {
            "timings_s": timings, "total_s": round(time.perf_counter() - started, 2),
            "peak_memory_gb": result["peak_memory_gb"], "peak_memory_kind": result["peak_memory_kind"],
            "device": result.get("device"), "forget_after": result["summary"]["after"].get("forget"),
        }
        print(f"{setting + '/' + label:<28}" + "".join(f"{timings.get(s, float('nan')):16.1f}" for s in STAGES)
              + f"{result['peak_memory_gb']:10.2f}", flush=True)
        write_json_atomic(args.output, figures)  # what is measured so far survives a later failure
    print(f"figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
