"""`e2u prepare <study>`: the work a study's cells share, done here, in this process, step by step.

`e2u study run` does the same steps as Dask tasks before the cells that need them (executor.py);
this command is for preparing ahead of time (a login node with the hub, say). The steps are planned
by `shared_work.plan_shared_steps`: the models converted, every setting's models, data and unedited
evaluation, the editors' key statistics. Each is cached, so preparing twice costs only the loads.
"""

from __future__ import annotations

from typing import Iterator

from e2u.study.grid import Study
from e2u.study.shared_work import plan_shared_steps, run_shared_step


def prepare_study(study: Study, models_only: bool = False) -> Iterator[str]:
    """Do every shared step of the study in order (only the model steps with `models_only`);
    yields one progress line per thing done."""
    for step in plan_shared_steps(list(study.cells)):
        if models_only and step.kind != "model":
            continue
        done = run_shared_step(step)
        yield from done["lines"]
        yield f"{step.name}: {done['seconds']:.1f} s"
