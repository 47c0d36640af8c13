"""TIES merging (Yadav et al., 2023) of several fine-tuned copies of one weight, as WISE merges its shards.

With task vectors tau_k = W_k - W (W the shared base):
  1. trim: keep the `density` share of each tau_k's entries with the largest magnitude, zero the rest;
  2. elect: the sign of each entry's sum over k;
  3. disjoint merge: the mean, per entry, over the k whose trimmed tau_k agrees with the elected sign.
The merged weight is W + that mean (WISE's weights 1.0, no rescaling).
"""

from __future__ import annotations

from typing import Sequence

import torch


def trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """tau with all but its `density` share of largest-magnitude entries set to zero."""
    keep = max(1, round(density * tau.numel()))
    if keep >= tau.numel():
        return tau.clone()
    cutoff = tau.abs().reshape(-1).kthvalue(tau.numel() - keep + 1).values
    return torch.where(tau.abs() >= cutoff, tau, torch.zeros_like(tau))


def ties_merge(base: torch.Tensor, weights: Sequence[torch.Tensor], density: float) -> torch.Tensor:
    """W + disjoint mean of the trimmed task vectors that agree with the elected sign."""
    taus = torch.stack([trim(w.float() - base.float(), density) for w in weights])
    sign = torch.sign(taus.sum(0))
    agree = (torch.sign(taus) == sign) & (taus != 0)
    count = agree.sum(0).clamp(min=1)
    return base.float() + (taus * agree).sum(0) / count
