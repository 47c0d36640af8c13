"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023).

The shared loop (`spread.edit_in_batches`) computes targets and spreads them over the layers;
MEMIT's solve for each layer is the least-squares update that keeps the corpus keys' outputs
(weighted by lambda) while mapping the new keys K to the residual R:

    dW = R K^T (lambda C + K K^T)^-1                                            (MEMIT eq. 14)

with C = E[k k^T] and lambda = `mom2_update_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spread import BatchEditHParams, edit_in_batches


@dataclass
class MemitHParams(BatchEditHParams):
    mom2_update_weight: float = 15_000.0


def memit_update(keys: torch.Tensor, residual: torch.Tensor, moment: torch.Tensor, weight: float) -> torch.Tensor:
    """R K^T (lambda C + K K^T)^-1 as a (d x d_k) matrix, solved in float64."""
    system = weight * moment + keys @ keys.T
    return torch.linalg.solve(system, keys @ residual.T).T


class MemitSolver:
    needs_batch_keys = False

    def __init__(self, arch, layers, moments, weight: float):
        self.moments = {layer: m.double() for layer, m in moments.items()}
        self.weight = weight
        self.log = {"mom2_update_weight": weight}

    def update(self, layer, keys, residual):
        moment = self.moments[layer].to(keys.device)
        return memit_update(keys, residual, moment, self.weight)

    def after_batch(self, layer, keys):
        pass


def apply(model, tokenizer, requests, hp: MemitHParams):
    return edit_in_batches(
        model, tokenizer, requests, hp, lambda arch, layers, moments: MemitSolver(arch, layers, moments, hp.mom2_update_weight),
        "memit",
    )
