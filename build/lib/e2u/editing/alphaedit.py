"""AlphaEdit: null-space constrained knowledge editing (Fang et al., ICLR 2025).

MEMIT's Algorithm 1 (memit.py), with the update projected onto the null space of the preserved keys:

    P  = U0 U0^T,  U0 = eigenvectors of C = E[k k^T] whose eigenvalue is below the threshold
    dW = R K^T P (K_p K_p^T P + K K^T P + alpha I)^-1                         (AlphaEdit eq. 12)

K_p K_p^T is the running sum of the keys of earlier batches (sequential editing): after each batch,
its keys on the edited model are added to it. Because the solution lies in the range of P,
dW k0 = 0 for every key k0 that P annihilates: what the corpus keys map to is left unchanged.
The kept rank of P is logged; rank 0 is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import torch

from e2u.editing.keys import compute_keys
from e2u.editing.locate import set_up
from e2u.editing.memit import BatchEditHParams, EditTotals, batches, edit_batch, window_layers
from e2u.errors import E2UError
from e2u.hparams import real_number
from e2u.model.load import input_device
from e2u.result import WeightDeltas

log = logging.getLogger(__name__)


@dataclass
class AlphaEditHParams(BatchEditHParams):
    nullspace_threshold: float = 2e-2
    nullspace_fraction: float = 0.0  # > 0: keep this fraction of the smallest eigen-directions instead
    L2: float = 10.0

    ALIASES = {**BatchEditHParams.ALIASES, "alpha": "L2"}

    def extra_rules(self) -> dict:
        return {**super().extra_rules(),
                "nullspace_threshold": (real_number(self.nullspace_threshold) and self.nullspace_threshold >= 0,
                                        "a number >= 0"),
                "nullspace_fraction": (real_number(self.nullspace_fraction) and 0 <= self.nullspace_fraction < 1,
                                       "a share in [0, 1)"),
                "L2": (real_number(self.L2) and self.L2 >= 0, "a number >= 0")}


def null_space_projector(moment: torch.Tensor, threshold: float, fraction: float = 0.0) -> tuple[torch.Tensor, int]:
    """P onto the eigen-directions of C below `threshold` (or the smallest `fraction` of them), and its rank."""
    values, vectors = torch.linalg.eigh(moment.double())  # ascending
    kept = int(round(fraction * len(values))) if fraction > 0 else int((values < threshold).sum())
    if kept == 0:
        raise E2UError(
            f"AlphaEdit: no eigenvalue of the key second moment is below nullspace_threshold={threshold:g} "
            f"(smallest {values[0].item():.3g}); the projector would have rank 0 and every edit would do nothing. "
            "Raise the threshold or set nullspace_fraction"
        )
    basis = vectors[:, :kept]
    return basis @ basis.T, kept


def alphaedit_solve(layer: int, keys: torch.Tensor, residual: torch.Tensor, projectors: dict, previous: dict,
                    alpha: float) -> torch.Tensor:
    """Solve (P (K K^T + K_p K_p^T) + alpha I) X = P K R^T and return X^T (d x d_k) (AlphaEdit eq. 12)."""
    projector = projectors[layer].to(keys.device)
    identity = torch.eye(projector.shape[0], dtype=projector.dtype, device=projector.device)
    system = projector @ (keys @ keys.T + previous[layer].to(keys.device)) + alpha * identity
    return torch.linalg.solve(system, projector @ keys @ residual.T).T


def edit(model, tokenizer, requests, hp: AlphaEditHParams) -> WeightDeltas:
    """AlphaEdit on `requests`, in place, batch after batch."""
    setup = set_up(model, tokenizer, requests, hp, window_layers(model, hp))
    projectors, kept_rank = {}, {}
    device = input_device(model)  # the eigendecomposition and the solves run there, in float64
    for layer in setup.layers:
        projectors[layer], kept_rank[layer] = null_space_projector(
            setup.moments[layer].to(device), hp.nullspace_threshold, hp.nullspace_fraction)
        log.info("AlphaEdit layer %d: null space of rank %d of %d", layer, kept_rank[layer], setup.arch.key_size)
    previous = {layer: torch.zeros_like(projectors[layer]) for layer in setup.layers}  # K_p K_p^T
    solve = partial(alphaedit_solve, projectors=projectors, previous=previous, alpha=hp.L2)
    totals = EditTotals(setup)
    for offset, batch in batches(requests, hp.batch_size):
        totals.add(offset, edit_batch(model, tokenizer, setup, batch, hp, solve))
        keys = compute_keys(model, tokenizer, setup.arch, setup.layers, batch, setup.templates)  # on the edited model
        for layer in setup.layers:
            previous[layer] += (keys[layer].T.double() @ keys[layer].double()).to(previous[layer].device)
    return totals.result("alphaedit", kept_rank=kept_rank, key_size=setup.arch.key_size)


def apply(model, tokenizer, problem, hp: AlphaEditHParams) -> WeightDeltas:
    """The unlearning problem's forget questions, edited into refusals in batches."""
    return edit(model, tokenizer, problem.edit_requests(), hp)
