"""The batch editing loop MEMIT and AlphaEdit share (MEMIT Alg. 1; AlphaEdit Alg. 1).

For each batch of requests:
  1. z_i: the residual-stream target at the subject's last token of the last edited layer
     (core.optimise_values at that block's output, `value_batch_size` requests per forward pass);
  2. for each edited layer l in order, on the partly edited model:
       K_l  = template-averaged keys at l                       (d_k x n)
       R    = Z - current block outputs at the last edited layer (d x n)
       dW_l = solver(l, K_l, R / layers left)                    (d x d_k), applied at once;
  3. a solver that keeps history sees the batch's final keys (AlphaEdit accumulates them).
The solver is the only difference between the methods.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from ..arch import Arch, find_arch
from ..errors import E2UError
from ..result import EditResult
from .core import LocateHParams, add_to_weight, compute_keys, context_templates, optimise_values, outputs_at_keys
from .requests import EditRequest, report_missing_subjects
from .stats import layer_moments

log = logging.getLogger(__name__)


class LayerSolver(Protocol):
    needs_batch_keys: bool  # whether after_batch wants the batch's keys on the edited model

    def update(self, layer: int, keys: torch.Tensor, residual: torch.Tensor) -> torch.Tensor: ...

    def after_batch(self, layer: int, keys: torch.Tensor) -> None: ...


def resolve_layers(value, n_layers: int, fraction: float = 0.13, count: int = 5) -> list[int]:
    """`auto`: `count` consecutive layers from `fraction` of the depth (Llama-7B: 4..8 of 32)."""
    if value == "auto":
        start = max(1, round(fraction * n_layers))
        return list(range(start, min(n_layers, start + count)))
    layers = [value] if isinstance(value, int) else list(value)
    if not layers or not all(isinstance(layer, int) and not isinstance(layer, bool) for layer in layers):
        raise E2UError(f"hyper-parameter layers: expected 'auto', an index or a list of indices, got {value!r}")
    return sorted(layers)


@dataclass
class BatchEditHParams(LocateHParams):
    """MEMIT and AlphaEdit: several layers, requests edited together in batches."""

    layers: object = "auto"
    batch_size: int = 0  # 0: every request in one batch; n: sequential batches of n
    value_batch_size: int = 8  # requests whose targets are optimised together (0: the whole batch)

    ALIASES = {**LocateHParams.ALIASES, "layer": "layers"}


def edit_in_batches(model, tokenizer, requests: list[EditRequest], hp, solver_for, name: str) -> EditResult:
    """Run the loop above; `solver_for(arch, layers, moments)` builds the method's solver."""
    arch = find_arch(model)
    layers = resolve_layers(hp.layers, arch.n_layers)
    for layer in layers:
        arch.check_layer(layer)
    started = time.perf_counter()
    missing = report_missing_subjects(tokenizer, requests)
    templates = context_templates(model, tokenizer, hp.n_context_templates, hp.context_template_length, hp.seed)
    moments, corpus_name = layer_moments(model, tokenizer, arch, layers, hp)
    solver = solver_for(arch, layers, moments)
    device = next(model.parameters()).device
    z_site = arch.layer_path(layers[-1])
    size = hp.batch_size or len(requests)
    totals = {layer: torch.zeros(arch.hidden_size, arch.key_size, device=device) for layer in layers}
    per_request, batches = [], []
    for start in range(0, len(requests), size):
        batch = requests[start : start + size]
        targets = []
        chunk = hp.value_batch_size or len(batch)
        for offset in range(0, len(batch), chunk):
            for j, (z, _, value_log) in enumerate(
                    optimise_values(model, tokenizer, batch[offset : offset + chunk], templates, z_site, hp)):
                targets.append(z)
                per_request.append({"request": start + offset + j, **value_log})
        targets = torch.stack(targets).T  # d x n
        for position, layer in enumerate(layers):
            keys = compute_keys(model, tokenizer, arch, [layer], batch, templates)[layer].T.double()  # d_k x n
            current = outputs_at_keys(model, tokenizer, z_site, batch).T  # d x n
            residual = (targets - current).double() / (len(layers) - position)
            delta = solver.update(layer, keys, residual)
            add_to_weight(model, arch, layer, delta.float())
            totals[layer] += delta.float()
        if solver.needs_batch_keys:  # AlphaEdit's running K_p K_p^T; one pass serves every layer
            final_keys = compute_keys(model, tokenizer, arch, layers, batch, templates)
            for layer in layers:
                solver.after_batch(layer, final_keys[layer].T.double())
        final = outputs_at_keys(model, tokenizer, z_site, batch).T
        batches.append({"requests": len(batch), "residual_left": round(((targets - final).norm() / targets.norm()).item(), 4)})
        log.info("%s: batch of %d edited, relative residual %.3f", name, len(batch), batches[-1]["residual_left"])
    return EditResult(
        model=model,
        deltas={arch.mlp_out_path(layer): totals[layer] for layer in layers},
        log={"method": name, "layers": layers, "templates": templates, "missing_subject": missing,
             "mom2_corpus": corpus_name, "requests": per_request, "batches": batches,
             "solver": getattr(solver, "log", {}), "seconds": round(time.perf_counter() - started, 2)},
    )
