"""The rewritten matrix W (an MLP's output projection), whatever its stored layout.

Editors write their updates as (d_out, d_in) = (hidden, key) matrices, as the papers do; a GPT-2
`Conv1D` stores W transposed (d_in x d_out), so the update is transposed before it is added.
"""

from __future__ import annotations

import torch

from e2u.model.arch import Arch, is_conv1d


def add_to_weight(model, arch: Arch, layer: int, delta_out_in: torch.Tensor) -> None:
    """W += delta at `layer`, delta given as (d_out, d_in): the sum is formed in float32 and rounded
    once to W's dtype (a bf16 W would otherwise round delta first, then the sum), on W's device."""
    module = model.get_submodule(arch.mlp_out_path(layer))
    update = delta_out_in.T if is_conv1d(module) else delta_out_in
    weight = module.weight
    with torch.no_grad():
        if weight.dtype in (torch.float32, torch.float64):
            weight.add_(update.to(device=weight.device, dtype=weight.dtype))
        else:
            weight.copy_(weight.float().add_(update.to(device=weight.device, dtype=torch.float32)))
