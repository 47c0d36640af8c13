"""ROME: Rank-One Model Editing (Meng et al., 2022), one request at a time.

For each request, on the current (already edited) model, at the MLP output projection W of layer L:
  1. k* = template-averaged key at the subject's last token              (ROME eq. 3; keys.compute_keys)
  2. v* = the MLP output there that makes the model emit the target       (ROME eq. 4; values)
  3. W <- W + (v* - W k) (C^-1 k*)^T / ((C^-1 k*)^T k)                     (ROME eq. 2)
     where k is the key of the bare prompt and C = E[k k^T] (identity without mom2_adjustment).
Used as unlearning, the target is a refusal and the prompt is the chat-rendered forget question.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch

from e2u.editing.batched_values import optimise_values
from e2u.editing.keys import compute_keys
from e2u.editing.layers import edited_layers
from e2u.editing.locate import LocateHParams, set_up
from e2u.editing.requests import EditRequest
from e2u.editing.weights import add_to_weight
from e2u.errors import E2UError
from e2u.hparams import real_number
from e2u.model.arch import find_arch
from e2u.model.load import input_device
from e2u.result import WeightDeltas

log = logging.getLogger(__name__)


@dataclass
class RomeHParams(LocateHParams):
    layer: int | str = "auto"
    mom2_adjustment: bool = True
    mom2_ridge: float = 1e-4

    ALIASES = {**LocateHParams.ALIASES, "layers": "layer"}

    def extra_rules(self) -> dict:
        return {**super().extra_rules(),
                "mom2_adjustment": (isinstance(self.mom2_adjustment, bool), "true or false"),
                "mom2_ridge": (real_number(self.mom2_ridge) and self.mom2_ridge >= 0, "a number >= 0")}


def rank_one_update(k_star: torch.Tensor, k: torch.Tensor, v_star: torch.Tensor, v: torch.Tensor,
                    inverse_moment: torch.Tensor | None) -> torch.Tensor:
    """ROME eq. 2 as a (d_out, d_in) matrix: the minimal-C-norm change with W' k = v*, in float32 at
    least (bf16 keys or values are promoted)."""
    given = [x for x in (k_star, k, v_star, v, inverse_moment) if x is not None]
    dtype = functools.reduce(torch.promote_types, [x.dtype for x in given], torch.float32)  # float32 at least
    k_star, k, v_star, v = (x.to(dtype) for x in (k_star, k, v_star, v))
    u = inverse_moment.to(dtype) @ k_star if inverse_moment is not None else k_star
    return torch.outer(v_star - v, u) / (u @ k)


def ridge_inverse(moment: torch.Tensor, ridge: float) -> torch.Tensor:
    """(C + ridge * mean(diag C) I)^-1, computed in float64 (on C's device)."""
    moment = moment.double()
    identity = torch.eye(moment.shape[0], dtype=moment.dtype, device=moment.device)
    return torch.linalg.inv(moment + ridge * moment.diagonal().mean() * identity)


def rome_layer(model, hp: RomeHParams) -> list[int]:
    """The one layer ROME rewrites, as a list (the layer rule of layers.py; several are an error)."""
    layers = edited_layers(hp.layer, find_arch(model).n_layers, count=1, name="layer")
    if len(layers) != 1:
        raise E2UError(f"ROME edits one layer; hyper-parameter layer names {layers}: use MEMIT to spread edits "
                       "over several layers")
    return layers


def edit(model, tokenizer, requests: list[EditRequest], hp: RomeHParams) -> WeightDeltas:
    """Edit `model` in place, one request after another; return the summed weight change and a log."""
    layers = rome_layer(model, hp)
    layer = layers[0]
    setup = set_up(model, tokenizer, requests, hp, layers, with_moments=hp.mom2_adjustment)
    device = input_device(model)
    inverse = ridge_inverse(setup.moments[layer].to(device), hp.mom2_ridge).float() if hp.mom2_adjustment else None
    site = setup.arch.mlp_path(layer)
    total = torch.zeros(setup.arch.hidden_size, setup.arch.key_size, device=device, dtype=torch.float32)
    per_request = []
    for i, request in enumerate(requests):
        k_star = compute_keys(model, tokenizer, setup.arch, layers, [request], setup.templates)[layer][0]
        k = compute_keys(model, tokenizer, setup.arch, layers, [request], ["{}"])[layer][0]
        ((v_star, v, value_log),) = optimise_values(model, tokenizer, [request], setup.templates, site, hp)
        delta = rank_one_update(k_star, k, v_star, v, inverse)
        add_to_weight(model, setup.arch, layer, delta)
        total += delta.float()
        per_request.append({"request": i, **value_log, "delta_norm": round(delta.norm().item(), 4)})
        log.info("ROME %d/%d: %d steps, final target NLL %.3f", i + 1, len(requests), value_log["steps"],
                 value_log["final_nll"])
    return WeightDeltas({setup.arch.mlp_out_path(layer): total}, setup.log("rome", requests=per_request))


def apply(model, tokenizer, problem, hp: RomeHParams) -> WeightDeltas:
    """The unlearning problem's forget questions, edited into refusals one by one."""
    return edit(model, tokenizer, problem.edit_requests(), hp)
