"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023), Algorithm 1.

For each batch of requests (all of them, or `batch_size` at a time, in turn):
  1. z_i = the residual-stream target at the subject's last token of the last edited layer L:
     h_L + delta_i, delta_i optimised as ROME's v* is (MEMIT eq. 16; values)
  2. for each edited layer l in order, on the partly edited model:
       K_l  = template-averaged keys at l                          (d_k x n; keys.compute_keys)
       R    = (Z - h_L) / (L - l + 1)                               the residual, spread over the layers left
       dW_l = solve(l, K_l, R)                                     (d x d_k), added at once
MEMIT's solve is the least-squares update that keeps the corpus keys' outputs (weighted by lambda)
while mapping the new keys K to R:

    dW = R K^T (lambda C + K K^T)^-1                                           (MEMIT eq. 14)

with C = E[k k^T] and lambda = `mom2_update_weight`. AlphaEdit (alphaedit.py) runs the same
algorithm with its own solve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from e2u.editing.batched_values import optimise_values
from e2u.editing.keys import compute_keys, outputs_at_keys
from e2u.editing.layers import edited_layers
from e2u.editing.locate import EditSetup, LocateHParams, set_up
from e2u.editing.requests import EditRequest
from e2u.editing.weights import add_to_weight
from e2u.hparams import real_number, whole_number
from e2u.model.arch import find_arch
from e2u.result import WeightDeltas

log = logging.getLogger(__name__)

Solve = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]  # (layer, K: d_k x n, R: d x n) -> dW: d x d_k


@dataclass
class BatchEditHParams(LocateHParams):
    """MEMIT and AlphaEdit: several layers, requests edited together in batches."""
    layers: object = "auto"
    batch_size: int = 0  # 0: every request in one batch; n: sequential batches of n
    value_batch_size: int = 8  # requests whose targets are optimised together (0: the whole batch)

    ALIASES = {**LocateHParams.ALIASES, "layer": "layers"}

    def extra_rules(self) -> dict:
        return {**super().extra_rules(),
                "batch_size": (whole_number(self.batch_size) and self.batch_size >= 0, "an integer >= 0 (0: one batch)"),
                "value_batch_size": (whole_number(self.value_batch_size) and self.value_batch_size >= 0,
                                     "an integer >= 0 (0: the whole batch)")}


@dataclass
class MemitHParams(BatchEditHParams):
    mom2_update_weight: float = 15_000.0

    def extra_rules(self) -> dict:
        return {**super().extra_rules(),
                "mom2_update_weight": (real_number(self.mom2_update_weight) and self.mom2_update_weight > 0,
                                       "a number > 0")}


def memit_solve(layer: int, keys: torch.Tensor, residual: torch.Tensor, moments: dict, weight: float) -> torch.Tensor:
    """R K^T (lambda C + K K^T)^-1 as a (d x d_k) matrix, solved in float64 (MEMIT eq. 14)."""
    moment = moments[layer].double().to(keys.device)
    return torch.linalg.solve(weight * moment + keys @ keys.T, keys @ residual.T).T


def targets(model, tokenizer, setup: EditSetup, batch: list[EditRequest], hp) -> tuple[torch.Tensor, list[dict]]:
    """Step 1: Z (d x n), the target residual at the last edited layer, `value_batch_size` requests a pass."""
    site = setup.arch.layer_path(setup.layers[-1])
    chunk = hp.value_batch_size or len(batch)
    found = [z for start in range(0, len(batch), chunk)
             for z in optimise_values(model, tokenizer, batch[start : start + chunk], setup.templates, site, hp)]
    return torch.stack([z for z, _, _ in found]).T, [value_log for _, _, value_log in found]


def spread(model, tokenizer, setup: EditSetup, batch: list[EditRequest], z: torch.Tensor, solve: Solve) -> dict:
    """Step 2: one update per layer, each closing its share of the residual left; returns {layer: dW}."""
    site = setup.arch.layer_path(setup.layers[-1])
    deltas = {}
    for position, layer in enumerate(setup.layers):
        keys = compute_keys(model, tokenizer, setup.arch, [layer], batch, setup.templates)[layer].T.double()
        current = outputs_at_keys(model, tokenizer, site, batch).T
        residual = (z - current).double() / (len(setup.layers) - position)
        deltas[layer] = solve(layer, keys, residual).float()
        add_to_weight(model, setup.arch, layer, deltas[layer])
    return deltas


def residual_left(model, tokenizer, setup: EditSetup, batch: list[EditRequest], z: torch.Tensor) -> float:
    """|Z - h_L| / |Z| after the batch's edits: how much of the targets the update did not reach."""
    final = outputs_at_keys(model, tokenizer, setup.arch.layer_path(setup.layers[-1]), batch).T
    return round(((z - final).norm() / z.norm()).item(), 4)


@dataclass
class BatchEdit:
    deltas: dict[int, torch.Tensor]  # layer -> dW (d x d_k)
    value_logs: list[dict]
    residual_left: float


def edit_batch(model, tokenizer, setup: EditSetup, batch: list[EditRequest], hp, solve: Solve) -> BatchEdit:
    """Algorithm 1 for one batch: the targets, then their spread over the layers."""
    z, value_logs = targets(model, tokenizer, setup, batch, hp)
    deltas = spread(model, tokenizer, setup, batch, z, solve)
    edited = BatchEdit(deltas, value_logs, residual_left(model, tokenizer, setup, batch, z))
    log.info("batch of %d edited, relative residual %.3f", len(batch), edited.residual_left)
    return edited


def batches(requests: list[EditRequest], size: int):
    """(offset, batch) pairs: every request in one batch when size is 0, else consecutive batches of `size`."""
    size = size or len(requests)
    return [(start, requests[start : start + size]) for start in range(0, len(requests), size)]


class EditTotals:
    """The summed weight change of every batch, and the per-request and per-batch logs."""
    def __init__(self, setup: EditSetup):
        self.setup = setup
        self.totals: dict[int, torch.Tensor] = {}
        self.requests: list[dict] = []
        self.batches: list[dict] = []

    def add(self, offset: int, edited: BatchEdit) -> None:
        for layer, delta in edited.deltas.items():
            self.totals[layer] = self.totals[layer] + delta if layer in self.totals else delta.clone()
        self.requests += [{"request": offset + j, **value_log} for j, value_log in enumerate(edited.value_logs)]
        self.batches.append({"requests": len(edited.value_logs), "residual_left": edited.residual_left})

    def result(self, method: str, **extra) -> WeightDeltas:
        paths = {self.setup.arch.mlp_out_path(layer): total for layer, total in self.totals.items()}
        return WeightDeltas(paths, self.setup.log(method, requests=self.requests, batches=self.batches, **extra))


def window_layers(model, hp: BatchEditHParams) -> list[int]:
    """The layers MEMIT and AlphaEdit spread each edit over (the layer rule of layers.py: five by default)."""
    return edited_layers(hp.layers, find_arch(model).n_layers, count=5)


def edit(model, tokenizer, requests: list[EditRequest], hp: MemitHParams) -> WeightDeltas:
    """MEMIT on `requests`, in place, batch after batch."""
    setup = set_up(model, tokenizer, requests, hp, window_layers(model, hp))
    solve = partial(memit_solve, moments=setup.moments, weight=hp.mom2_update_weight)
    totals = EditTotals(setup)
    for offset, batch in batches(requests, hp.batch_size):
        totals.add(offset, edit_batch(model, tokenizer, setup, batch, hp, solve))
    return totals.result("memit", mom2_update_weight=hp.mom2_update_weight)


def apply(model, tokenizer, problem, hp: MemitHParams) -> WeightDeltas:
    """The unlearning problem's forget questions, edited into refusals in batches."""
    return edit(model, tokenizer, problem.edit_requests(), hp)
