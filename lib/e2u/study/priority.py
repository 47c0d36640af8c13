"""Which ready job a study starts first: the executor submits the highest while a worker thread is free."""

from __future__ import annotations

from types import MappingProxyType

from e2u.cell.params import CellParams


# Which cells start first among those ready: the slowest kinds (measured in the default build on 2 cores: MEMIT
# and AlphaEdit ~210 s a cell, WISE ~190 s, GRACE ~100 s, ROME and the training baselines 50-90 s; in the quick
# study ROME's pretrained cell, 52 s against the baselines' 28-37 s, ran last and alone for 33 s), so that the
# last cells to run are short ones and no worker idles through a long tail.
SLOW_METHODS = MappingProxyType({"memit": 3, "alphaedit": 3, "wise": 2, "grace": 1, "rome": 1})


# Steps before cells (a cell's rank is below 10), finetuning first: the finetuned settings' cells wait for it.
STEP_PRIORITY = MappingProxyType({"model": 1000, "finetune": 2000, "setting": 1000, "statistics": 1000})


def cost_rank(cell: CellParams) -> int:
    """The dask priority of a cell (higher starts first): its method's rank, raised by chunks (an evaluation per
    chunk) and by a larger forget set."""
    n_forget = cell.data_options.get("n_forget") or cell.data_options.get("forget_questions") or 20
    return SLOW_METHODS.get(cell.method, 0) + (cell.chunks > 1) + (n_forget > 10) * 2
