"""The peak memory of this process's work so far (DESIGN section 4: a cell's cost is its wall time and peak memory).

On a GPU it is what PyTorch allocated at most, summed over the devices (`torch.cuda.max_memory_allocated`;
`torch.cuda.reset_peak_memory_stats()` starts a new window); on the CPU it is the process's peak resident
set size (`getrusage` `ru_maxrss`), which covers the whole life of the process and cannot be reset.
"""

from __future__ import annotations

import resource
import sys

import torch

GIB = 2**30


def peak_memory_kind() -> str:
    """'cuda' when this process has used CUDA, else 'rss'."""
    return "cuda" if torch.cuda.is_available() and torch.cuda.is_initialized() else "rss"


def peak_memory_gb() -> float:
    """Peak memory in GiB: CUDA allocations summed over devices when CUDA is used, else the peak RSS."""
    if peak_memory_kind() == "cuda":
        return round(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / GIB, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return round(peak * bytes_per_unit / GIB, 3)
