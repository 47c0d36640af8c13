"""The unlearning problem every method is given (DESIGN section 2).

Editors turn `forget` into edit requests (each question edited into a refusal); training baselines
use `forget` and `retain` as data; methods that need a frozen reference model (KL, DPO, NPO) ask
`reference()`, which loads it on first use and keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .data.schema import QARecord
from .errors import E2UError
from .editing.requests import EditRequest, unlearning_requests


@dataclass
class UnlearningProblem:
    forget: Sequence[QARecord]
    retain: Sequence[QARecord] = ()  # what must be kept: the retain set, or neighbour facts
    refusal: str = "fixed"  # the refusal target: `fixed` or `sampled` (data.refusals)
    seed: int = 0
    load_reference: Callable[[], torch.nn.Module] | None = None
    _reference: torch.nn.Module | None = field(default=None, init=False, repr=False)

    def edit_requests(self) -> list[EditRequest]:
        """One request per forget record: its question edited into a refusal."""
        return unlearning_requests(self.forget, self.refusal, self.seed)

    def reference(self) -> torch.nn.Module:
        """The frozen model before unlearning, loaded once (eval mode, no gradients)."""
        if self._reference is None:
            if self.load_reference is None:
                raise E2UError("this unlearning problem has no reference model: the method needs one, "
                               "but no load_reference was given")
            model = self.load_reference().eval()
            for p in model.parameters():
                p.requires_grad_(False)
            self._reference = model
        return self._reference
