"""ROME: Rank-One Model Editing (Meng et al., 2022), one request at a time.

For each request, on the current (already edited) model:
  1. k* = template-averaged key at the subject's last token of layer L (core.compute_keys);
  2. v* = the MLP output at that token that makes the model emit the target (core.optimise_value);
  3. W <- W + (v* - W k) (C^-1 k*)^T / ((C^-1 k*)^T k)        (ROME eq. 2)
     where k is the key of the bare prompt and C = E[k k^T] (identity without mom2_adjustment).
Used as unlearning, the target is a refusal and the prompt is the chat-rendered forget question.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from ..arch import find_arch
from ..hparams import resolve_layer
from .core import LocateHParams, add_to_weight, compute_keys, context_templates, optimise_value
from .requests import EditRequest, report_missing_subjects
from ..result import EditResult
from .stats import layer_moments

log = logging.getLogger(__name__)


@dataclass
class RomeHParams(LocateHParams):
    layer: int | str = "auto"
    mom2_adjustment: bool = True
    mom2_ridge: float = 1e-4

    ALIASES = {**LocateHParams.ALIASES, "layers": "layer"}


def rank_one_update(k_star: torch.Tensor, k: torch.Tensor, v_star: torch.Tensor, v: torch.Tensor,
                    inverse_moment: torch.Tensor | None) -> torch.Tensor:
    """ROME's closed form as a (d_out, d_in) matrix: the minimal-C-norm change with W' k = v*."""
    u = inverse_moment @ k_star if inverse_moment is not None else k_star
    return torch.outer(v_star - v, u) / (u @ k)


def apply(model, tokenizer, requests: list[EditRequest], hp: RomeHParams) -> EditResult:
    """Edit `model` in place, one request after another; return the summed weight change and a log."""
    arch = find_arch(model)
    layer = resolve_layer(hp.layer[0] if isinstance(hp.layer, list) else hp.layer, arch.n_layers, 0.16)
    arch.check_layer(layer)
    started = time.perf_counter()
    missing = report_missing_subjects(tokenizer, requests)
    templates = context_templates(model, tokenizer, hp.n_context_templates, hp.context_template_length, hp.seed)
    inverse = None
    corpus_name = None
    if hp.mom2_adjustment:
        moments, corpus_name = layer_moments(model, tokenizer, arch, [layer], hp)
        moment = moments[layer].double()
        ridge = hp.mom2_ridge * moment.diagonal().mean()
        inverse = torch.linalg.inv(moment + ridge * torch.eye(moment.shape[0], dtype=moment.dtype)).float()
        inverse = inverse.to(next(model.parameters()).device)
    path = arch.mlp_path(layer)
    total = torch.zeros(arch.hidden_size, arch.key_size, device=next(model.parameters()).device)
    per_request = []
    for i, request in enumerate(requests):
        k_star = compute_keys(model, tokenizer, arch, [layer], [request], templates)[layer][0]
        k_bare = compute_keys(model, tokenizer, arch, [layer], [request], ["{}"])[layer][0]
        v_star, v0, value_log = optimise_value(model, tokenizer, request, templates, path, hp)
        delta = rank_one_update(k_star, k_bare, v_star, v0, inverse)
        add_to_weight(model, arch, layer, delta)
        total += delta.float()
        per_request.append({"request": i, **value_log, "delta_norm": round(delta.norm().item(), 4)})
        log.info("ROME %d/%d: %d steps, final target NLL %.3f", i + 1, len(requests), value_log["steps"], value_log["final_nll"])
    return EditResult(
        model=model,
        deltas={arch.mlp_out_path(layer): total},
        log={
            "method": "rome", "layer": layer, "templates": templates, "missing_subject": missing,
            "mom2_corpus": corpus_name, "requests": per_request, "seconds": round(time.perf_counter() - started, 2),
        },
    )
