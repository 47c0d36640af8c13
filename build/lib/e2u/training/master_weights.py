"""Float32 master copies for half-precision training.

A model in bf16 (or fp16) is trained with float32 master copies of its parameters: the forward and backward
passes run in the model's dtype, AdamW steps the float32 copies, which are rounded into the model after each
step. Stepping bf16 weights directly would lose most updates: at lr 1e-5 an Adam step is below half a bf16 ulp
of a typical weight, so it rounds to nothing.
"""

from __future__ import annotations

import torch


class MasterWeights:
    """The parameters AdamW steps: the model's own when they are float32 (or float64), float32 copies
    of them when they are half precision (then gradients are copied in and the steps copied back)."""

    def __init__(self, params):
        self.pairs = []  # (model parameter, its float32 master or itself)
        for p in params:
            master = p.detach().float().requires_grad_(True) if p.dtype in (torch.bfloat16, torch.float16) else p
            self.pairs.append((p, master))
        self.parameters = [master for _, master in self.pairs]

    def take_gradients(self) -> None:
        for p, master in self.pairs:
            if master is not p:
                master.grad = None if p.grad is None else p.grad.float()
                p.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        for p, master in self.pairs:
            if master is not p:
                p.copy_(master)

    def snapshot(self) -> list[torch.Tensor]:
        return [master.detach().clone() for master in self.parameters]

    @torch.no_grad()
    def restore(self, snapshot: list[torch.Tensor]) -> None:
        for master, saved in zip(self.parameters, snapshot):
            master.copy_(saved)
        self.write_back()
