"""Where GRACE and WISE attach, and how they compute a projection with other weights.

The layer: an integer, or `auto` = 0.84 of the depth, the place of the reference configs' Llama
choice (`layers[27].mlp.down_proj` of 32). The site is that block's MLP output projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..arch import find_arch, is_conv1d
from ..errors import E2UError

AUTO_DEPTH = 27 / 32


def memory_layer(model, layer: int | str, method: str) -> int:
    """The block index a memory attaches to (`auto`, or an integer checked against the model)."""
    arch = find_arch(model)
    if layer == "auto":
        return min(arch.n_layers - 1, round(AUTO_DEPTH * arch.n_layers))
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < arch.n_layers:
        raise E2UError(f"{method}: hyper-parameter layer must be 'auto' or a block index in 0..{arch.n_layers - 1}, "
                       f"got {layer!r}")
    return layer


def project(module: torch.nn.Module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`module`'s forward with `weight` in place of its own (nn.Linear, or GPT-2's Conv1D: x @ W + b)."""
    bias = getattr(module, "bias", None)
    if is_conv1d(module):
        out = x.reshape(-1, x.shape[-1]) @ weight.to(x.dtype)
        out = out + bias.to(x.dtype) if bias is not None else out
        return out.reshape(*x.shape[:-1], weight.shape[1])
    return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
