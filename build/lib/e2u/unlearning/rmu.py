"""Representation misdirection for unlearning (RMU; Li et al. 2024, WMDP): on forget tokens, steer one block's
output towards a fixed random direction; on retain tokens, keep it where the model before unlearning had it.

    L = gamma mean_t || h_l(forget)_t - c u ||^2 / d  +  alpha mean_t || h_l(retain)_t - h_l^ref(retain)_t ||^2 / d

u: uniform in [0, 1)^d, drawn once from the seed and normalised; c: `steering_coeff`; t: the answer tokens;
h_l: the output of block `steer_layer` (the forward pass stops there). Only blocks `layers` train (full weights;
by default the steered block and the two below it, as WMDP's layers 5-7 for layer 7).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch

from e2u.errors import E2UError
from e2u.hparams import real_number, whole_number
from e2u.model.arch import find_arch
from e2u.training.trainable import trained_blocks
from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import answer_token_mask, block_output, masked_mse


@dataclass
class RMUHParams(UnlearnHParams):
    steer_layer: int = 7  # WMDP's layer for 32-block models; about a quarter of the depth
    steering_coeff: float = 2.0  # open-unlearning's default (WMDP used 6.5 for Zephyr-7B)
    layers: str = ""  # the blocks that train; empty: steer_layer - 2 .. steer_layer
    adapter: str = "full"

    def extra_rules(self) -> dict:
        return {**super().extra_rules(), "steer_layer": (lambda v: whole_number(v) and v >= 0, "a block index"),
                "steering_coeff": (lambda v: real_number(v) and v > 0, "a positive number")}

    def trained(self) -> "RMUHParams":
        """These settings with `layers` filled in (what trains is part of RMU's definition)."""
        if self.layers.strip():
            return self
        return replace(self, layers=",".join(str(i) for i in range(max(0, self.steer_layer - 2), self.steer_layer + 1)))


def direction(model, hp: RMUHParams) -> torch.Tensor:
    """c u with u ~ U[0, 1)^d from the seed, normalised (the same vector for every step of a run)."""
    generator = torch.Generator().manual_seed(hp.seed)
    u = torch.rand(model.config.hidden_size, generator=generator)
    return hp.steering_coeff * u / u.norm()


def loss(model, forget, retain, reference, hp, path: str):
    """`path`: the steered block's module path, found before training (an attached adapter hides the layout)."""
    hidden = block_output(model, forget.answer, path)
    target = direction(model, hp).to(hidden.device, hidden.dtype).expand_as(hidden)
    terms = {"forget": masked_mse(hidden, target, answer_token_mask(forget.answer))}
    if retain is not None:
        with reference() as frozen:
            kept = block_output(frozen, retain, path, grad=False)
        terms["retain"] = masked_mse(block_output(model, retain, path), kept, answer_token_mask(retain))
    return terms


def rmu_blocks(model, hp: RMUHParams) -> list[int]:
    """The blocks RMU trains, after checking that the steered block exists in `model`."""
    n_layers = find_arch(model).n_layers
    if hp.steer_layer >= n_layers:
        raise E2UError(f"rmu: steer_layer: expected a block below {n_layers} for this model, got {hp.steer_layer}")
    return trained_blocks(model, hp.trained())


def apply(model, tokenizer, problem, hp: RMUHParams):
    """Unlearn by RMU: check the steered block exists, train the blocks `layers` (default: it and two below)."""
    rmu_blocks(model, hp)
    steered = partial(loss, path=find_arch(model).layer_path(hp.steer_layer))
    return training_method(steered, "rmu")(model, tokenizer, problem, hp.trained())
