"""AlphaEdit: null-space constrained knowledge editing (Fang et al., ICLR 2025).

MEMIT's loop, with the update projected onto the null space of the preserved keys:

    P  = U0 U0^T,  U0 = eigenvectors of C = E[k k^T] whose eigenvalue is below the threshold
    dW = R K^T P (K_p K_p^T P + K K^T P + alpha I)^-1                         (AlphaEdit eq. 12)

K_p K_p^T is the running sum of the keys of earlier batches (sequential editing). Because the
solution lies in the range of P, dW k0 = 0 for every key k0 that P annihilates: what the corpus
keys map to is left unchanged. The kept rank of P is logged; rank 0 is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import E2UError
from .spread import BatchEditHParams, edit_in_batches

log = logging.getLogger(__name__)


@dataclass
class AlphaEditHParams(BatchEditHParams):
    nullspace_threshold: float = 2e-2
    nullspace_fraction: float = 0.0  # > 0: keep this fraction of the smallest eigen-directions instead
    L2: float = 10.0

    ALIASES = {**BatchEditHParams.ALIASES, "alpha": "L2"}


def null_space_projector(moment: torch.Tensor, threshold: float, fraction: float = 0.0) -> tuple[torch.Tensor, int]:
    """P onto the eigen-directions of C below `threshold` (or the smallest `fraction` of them)."""
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


def alphaedit_update(keys, residual, projector, previous, alpha: float) -> torch.Tensor:
    """Solve (P (K K^T + C_prev) + alpha I) X = P K R^T and return X^T (d x d_k)."""
    identity = torch.eye(projector.shape[0], dtype=projector.dtype, device=projector.device)
    system = projector @ (keys @ keys.T + previous) + alpha * identity
    return torch.linalg.solve(system, projector @ keys @ residual.T).T


class AlphaEditSolver:
    needs_batch_keys = True

    def __init__(self, arch, layers, moments, hp: AlphaEditHParams):
        self.projectors, self.previous, self.log = {}, {}, {"kept_rank": {}, "key_size": arch.key_size}
        for layer in layers:
            projector, kept = null_space_projector(moments[layer], hp.nullspace_threshold, hp.nullspace_fraction)
            self.projectors[layer] = projector
            self.previous[layer] = torch.zeros_like(projector)
            self.log["kept_rank"][layer] = kept
            log.info("AlphaEdit layer %d: null space of rank %d of %d", layer, kept, arch.key_size)
        self.alpha = hp.L2

    def update(self, layer, keys, residual):
        projector = self.projectors[layer].to(keys.device)
        return alphaedit_update(keys, residual, projector, self.previous[layer].to(keys.device), self.alpha)

    def after_batch(self, layer, keys):
        self.previous[layer] = self.previous[layer].to(keys.device) + keys @ keys.T


def apply(model, tokenizer, requests, hp: AlphaEditHParams):
    return edit_in_batches(model, tokenizer, requests, hp,
                           lambda arch, layers, moments: AlphaEditSolver(arch, layers, moments, hp), "alphaedit")
