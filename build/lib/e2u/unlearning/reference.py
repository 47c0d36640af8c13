"""The frozen reference model pi_ref of KL, DPO, NPO and RMU: the model before unlearning.

With a LoRA adapter the reference is the model itself with its adapter switched off: the base weights are
exactly the model before unlearning, so no second copy is loaded (half the memory, no load time). With
full-weight training it is the problem's own reference (`UnlearningProblem.reference()`, loaded once, frozen),
or, for a problem without a loader, a frozen copy of the model taken at the first call (before the first step).
Either way the reference runs in eval mode (no dropout) and without gradients, and is built only if a loss asks.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


class Reference:
    def __init__(self, model: nn.Module, problem, adapter: str):
        self.model, self.problem, self.adapter = model, problem, adapter
        self.used = False
        self.stepped = False  # set by the loop after its first optimiser step
        self._copy: nn.Module | None = None

    @contextmanager
    def __call__(self) -> Iterator[nn.Module]:
        """`with reference() as ref:` ref(**batch) is the model before unlearning, without gradients."""
        self.used = True
        if self.adapter != "lora":
            with torch.no_grad():
                yield self._frozen()
            return

        layers = [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]
        training = self.model.training
        self.model.eval()
        for layer in layers:
            layer.enable_adapters(False)
        try:
            with torch.no_grad():
                yield self.model
        finally:
            for layer in layers:
                layer.enable_adapters(True)  # peft sets the adapter's requires_grad back to True
            self.model.train(training)

    def _frozen(self) -> nn.Module:
        if self.problem.load_reference is not None:
            return self.problem.reference()
        if self._copy is None:
            if self.stepped:
                raise RuntimeError("the reference model was first asked for after an optimiser step")

            self._copy = copy.deepcopy(self.model).eval().requires_grad_(False)
        return self._copy
