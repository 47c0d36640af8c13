"""Where GRACE and WISE attach, the settings they share, and how they compute a projection with other weights.

The layer: an integer, or `auto` = 0.84 of the depth, the place of the reference configs' Llama
choice (`layers[27].mlp.down_proj` of 32). The site is that block's MLP output projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from e2u.errors import E2UError
from e2u.hparams import CheckedHParams, real_number, whole_number
from e2u.model.arch import find_arch, is_conv1d

AUTO_DEPTH = 27 / 32


@dataclass
class MemoryHParams(CheckedHParams):
    """What GRACE and WISE share: the block, the optimiser's rate and steps, requests per edit, the failed-edit
    bound, the CPU shortcut and the seed. A subclass adds its own fields and their rules."""
    layer: int | str = "auto"
    edit_lr: float = 1.0
    n_iter: int = 50
    batch_size: int = 1  # requests per edit: 1 is sequential editing
    max_retain_routing: float = 0.5  # above this share of kept prompts routed, the edit has failed
    reuse_frozen: bool = True  # start each training pass at the memory's block (the blocks below never change)
    seed: int = 0

    METHOD = ""

    def rules(self) -> dict:
        return {"edit_lr": (real_number(self.edit_lr) and self.edit_lr > 0, "a number > 0"),
                "n_iter": (whole_number(self.n_iter) and self.n_iter >= 1, "an integer >= 1"),
                "batch_size": (whole_number(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
                "max_retain_routing": (real_number(self.max_retain_routing) and 0 <= self.max_retain_routing <= 1,
                                       "a share in [0, 1]"),
                "reuse_frozen": (isinstance(self.reuse_frozen, bool), "true or false"),
                "seed": (whole_number(self.seed), "an integer"), **self.extra_rules()}

    def extra_rules(self) -> dict:
        """A subclass's own fields: {name: (holds, what is expected)}."""
        return {}


def memory_layer(model, layer: int | str, method: str) -> int:
    """The block index a memory attaches to (`auto`, or an integer checked against the model)."""
    arch = find_arch(model)
    if layer == "auto":
        return min(arch.n_layers - 1, round(AUTO_DEPTH * arch.n_layers))
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < arch.n_layers:
        raise E2UError(f"{method}: layer: expected 'auto' or a block index in 0..{arch.n_layers - 1}, "
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
