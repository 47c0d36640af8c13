"""What a result file records so that its numbers can be reproduced, and the book's last page, which lists it.

Each cell stores `reproducibility`: the versions of the packages its numbers depend on, the Python and the
platform, the threads it ran with, the fingerprint of the model it loaded (`model.load.model_fingerprint`, before
unlearning), the SHA-256 of every data file it read, its seed, its device and its wall time. On the same CPU
machine with the same record, a rerun of the cell reproduces its per-item values exactly
(tests/cell/test_reproducibility.py); `e2u compare` checks two result folders item by item.
"""

from __future__ import annotations

import platform
from importlib import metadata

import pandas as pd
import torch

PACKAGES = ("e2u", "torch", "transformers", "peft", "accelerate", "safetensors", "datasets", "numpy", "rouge-score",
            "papermill", "dask", "gguf")


def package_versions() -> dict[str, str]:
    """{package: installed version} for `PACKAGES` ("not installed" where one is absent)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cell_record(model_fingerprint: str, data_files: dict[str, str], seed: int, device: str, wall_s: float) -> dict:
    """The `reproducibility` entry of a result file."""
    return {"packages": package_versions(), "python": platform.python_version(), "platform": platform.platform(),
            "threads": torch.get_num_threads(), "model_fingerprint": model_fingerprint, "data_files": data_files,
            "seed": seed, "device": device, "wall_s": round(wall_s, 2)}


def cells_table(results: list[dict]) -> pd.DataFrame:
    """One row per cell: its seed, device, threads, model fingerprint, data file hashes (first 12 digits) and
    wall time. Cells from before the record existed show what they have."""
    rows = []
    for r in results:
        record = r.get("reproducibility") or {}
        files = record.get("data_files") or {}
        rows.append({"setting": r["params"]["setting"], "cell": r["cell_id"], "seed": r["params"]["seed"],
                     "device": record.get("device", r.get("device")), "threads": record.get("threads"),
                     "model fingerprint": record.get("model_fingerprint"),
                     "data files": ", ".join(f"{name} {digest[:12]}" for name, digest in sorted(files.items())) or "-",
                     "wall time (s)": record.get("wall_s")})
    return pd.DataFrame(rows).set_index(["setting", "cell"]) if rows else pd.DataFrame(rows)


def environment_table(results: list[dict]) -> pd.DataFrame:
    """Each package version (and Python, platform) with the number of cells that ran with it: one row per
    package when the study ran in one environment."""
    counts: dict[tuple[str, str], int] = {}
    for r in results:
        record = r.get("reproducibility") or {}
        entries = {**record.get("packages", {}), "python": record.get("python"), "platform": record.get("platform")}
        for name, version in entries.items():
            if version:
                counts[name, version] = counts.get((name, version), 0) + 1
    rows = [{"package": name, "version": version, "cells": n} for (name, version), n in sorted(counts.items())]
    return pd.DataFrame(rows).set_index("package") if rows else pd.DataFrame(rows)
