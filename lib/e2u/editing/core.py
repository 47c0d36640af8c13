"""The mathematics ROME, MEMIT and AlphaEdit share, written once.

* context templates: short model-written prefixes over which keys are averaged (ROME section 3.1);
* keys k*: the input of the rewritten MLP matrix at the subject's last token, averaged over
  templates (ROME eq. 3);
* values v*: the output that makes the model produce the target, found by optimising a vector
  delta added at one site, with loss NLL + KL + weight decay and a norm clamp (ROME eq. 4);
* weight updates in the stored layout of the matrix (nn.Linear or GPT-2 Conv1D).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..arch import Arch, is_conv1d
from ..hooks import trace
from ..prompts import encode_answer
from .requests import EditRequest, Site, key_site

log = logging.getLogger(__name__)

_TEMPLATE_SEEDS = ("The", "Therefore", "Because", "I", "You")


def context_templates(model, tokenizer, count: int, length: int = 10, seed: int = 0) -> list[str]:
    """`["{}"]` plus `count` sampled prefixes of `length` tokens, each followed by `. {}`.

    Sampling uses its own seeded generator state, so calling this changes no global RNG.
    """
    if count <= 0:
        return ["{}"]
    device = next(model.parameters()).device
    seeds = [_TEMPLATE_SEEDS[i % len(_TEMPLATE_SEEDS)] for i in range(count)]
    texts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for prefix in seeds:
            ids = torch.tensor([tokenizer(prefix)["input_ids"]], device=device)
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=length, do_sample=True,
                top_k=5, pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(out[0], skip_special_tokens=True).replace("{", "").replace("}", "")
            texts.append(" ".join(text.split()) + ". {}")
    return ["{}"] + texts


def _right_padded(sites: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sites)
    ids = torch.full((len(sites), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sites), width), dtype=torch.long)
    for row, s in enumerate(sites):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _gather_at_sites(
    model, tokenizer, paths: dict, requests: list[EditRequest], templates: list[str], inputs: bool, batch_size: int,
) -> dict:
    """Template-averaged input (or output) of each module in `paths` at every request's key token.

    One forward pass per batch serves every module, and stops after the deepest one.
    """
    device = next(model.parameters()).device
    sites = [key_site(tokenizer, r, t) for r in requests for t in templates]
    sums: dict = {}
    for start in range(0, len(sites), batch_size):
        chunk = sites[start : start + batch_size]
        ids, mask = _right_padded([s.ids for s in chunk], tokenizer.pad_token_id, device)
        with trace(model, list(paths.values()), retain_input=inputs, retain_output=not inputs, stop=True) as t:
            model(input_ids=ids, attention_mask=mask)
        rows = torch.arange(len(chunk), device=device)
        index = torch.tensor([s.index for s in chunk], device=device)
        owner = torch.tensor([(start + j) // len(templates) for j in range(len(chunk))], device=device)
        for name, path in paths.items():
            found = (t.inputs if inputs else t.outputs)[path][rows, index].float()
            if name not in sums:
                sums[name] = torch.zeros(len(requests), found.shape[-1], device=device)
            sums[name].index_add_(0, owner, found)
    return {name: total / len(templates) for name, total in sums.items()}


def compute_keys(
    model, tokenizer, arch: Arch, layers: list[int], requests: list[EditRequest], templates: list[str],
    batch_size: int = 32,
) -> dict[int, torch.Tensor]:
    """k* per request and layer: (n_requests, d_k), the template-averaged key (ROME eq. 3)."""
    paths = {layer: arch.mlp_out_path(layer) for layer in layers}
    return _gather_at_sites(model, tokenizer, paths, requests, templates, True, batch_size)


def outputs_at_keys(model, tokenizer, path: str, requests: list[EditRequest], batch_size: int = 32) -> torch.Tensor:
    """(n_requests, d): the output of module `path` at each bare prompt's key token."""
    return _gather_at_sites(model, tokenizer, {path: path}, requests, ["{}"], False, batch_size)[path]


@dataclass
class ValueHParams:
    """Value-optimisation settings (names as in the ROME/MEMIT reference code)."""

    v_lr: float = 0.5
    v_num_grad_steps: int = 25
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    early_stop_loss: float = 5e-2


@dataclass
class LocateHParams(ValueHParams):
    """What every locate-then-edit method shares: value optimisation, context templates, statistics."""

    n_context_templates: int = 5
    context_template_length: int = 10
    mom2_corpus: str = "model_samples+question_bank"
    mom2_corpus_texts: int = 64
    mom2_n_tokens: int = 20_000
    mom2_max_length: int = 256
    mom2_dtype: str = "float32"
    seed: int = 0

    ALIASES = {"v_steps": "v_num_grad_steps", "mom2_n_samples": "mom2_n_tokens"}


@contextmanager
def frozen_parameters(model):
    """Turn off weight gradients for the block (value optimisation needs only delta's)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _kl_site(tokenizer, request: EditRequest) -> Site:
    """ROME's "essence" prompt `{subject} is a`, keyed at the subject's last token."""
    if not request.subject:
        return key_site(tokenizer, request)
    ids = tokenizer(f"{request.subject} is a")["input_ids"]
    prefix = tokenizer(request.subject)["input_ids"]
    return Site(ids, min(len(prefix), len(ids)) - 1, True)


def optimise_value(
    model, tokenizer, request: EditRequest, templates: list[str], site_path: str, hp: ValueHParams,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Find v* = v0 + delta at `site_path` (an MLP or block output) so the model emits the target.

    Loss (ROME eq. 4 / MEMIT eq. 16): mean target NLL over the templated prompts
    + kl_factor * KL(p_initial || p) on the essence prompt + v_weight_decay * |delta| / |v0|^2,
    with |delta| clamped to clamp_norm_factor * |v0| after every Adam step.
    Returns (v*, v0, log).
    """
    device = next(model.parameters()).device
    target = encode_answer(tokenizer, request.target, with_eos=request.eos)
    rows, labels_at, sites = [], [], []
    for template in templates:
        site = key_site(tokenizer, request, template)
        rows.append(site.ids + target[:-1])  # teacher forcing: the last target token is only a label
        labels_at.append(len(site.ids) - 1)
        sites.append(site.index)
    kl = _kl_site(tokenizer, request)
    rows.append(kl.ids)
    sites.append(kl.index)
    ids, mask = _right_padded(rows, tokenizer.pad_token_id, device)
    n_rewrite = len(templates)
    labels = torch.full(ids.shape, -100, dtype=torch.long, device=device)
    for row, start in enumerate(labels_at):
        labels[row, start : start + len(target)] = torch.tensor(target, device=device)
    row_index = torch.arange(len(rows), device=device)
    # Positions whose next-token distribution the loss reads: every target position, then the KL site.
    label_rows, label_cols = (labels[:n_rewrite] != -100).nonzero(as_tuple=True)
    label_ids = labels[label_rows, label_cols]
    label_rows = torch.cat([label_rows, torch.tensor([n_rewrite], device=device)])
    label_cols = torch.cat([label_cols, torch.tensor([sites[n_rewrite]], device=device)])
    per_row = torch.bincount(label_rows[:-1], minlength=n_rewrite).float()
    head = model.get_output_embeddings()
    site_index = torch.tensor(sites, device=device)

    width = model.get_input_embeddings().weight.shape[1]
    delta = torch.zeros(width, device=device, dtype=torch.float32, requires_grad=True)
    state: dict[str, torch.Tensor] = {}

    def add_delta(path, output):
        if "v0" not in state:
            state["v0"] = output[0, site_index[0]].detach().float().clone()
        output = output.clone()
        output[row_index, site_index] += delta.to(output.dtype)
        return output

    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    history = []
    with frozen_parameters(model), torch.enable_grad():
        for step in range(hp.v_num_grad_steps):
            optimiser.zero_grad()
            with trace(model, [site_path], edit_output=add_delta):
                hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            # The LM head only where a loss reads it: the vocabulary projection is a fifth of the cost.
            # (Base models end with their final norm; logit soft-capping, as in Gemma-2, is not applied.)
            logprobs = head(hidden[label_rows, label_cols]).float().log_softmax(-1)
            token_nll = -logprobs[:-1].gather(1, label_ids.unsqueeze(1)).squeeze(1)
            nll = (torch.zeros(n_rewrite, device=device).index_add(0, label_rows[:-1], token_nll) / per_row).mean()
            kl_logprobs = logprobs[-1:]
            if "kl_init" not in state:
                state["kl_init"] = kl_logprobs.detach().clone()
            kl = F.kl_div(kl_logprobs, state["kl_init"], log_target=True, reduction="batchmean")
            decay = hp.v_weight_decay * delta.norm() / state["v0"].norm() ** 2
            loss = nll + hp.kl_factor * kl + decay
            history.append(round(loss.item(), 4))
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                limit = hp.clamp_norm_factor * state["v0"].norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    final_nll = round(nll.item(), 4)
    return (state["v0"] + delta.detach()), state["v0"], {"loss": history, "steps": len(history), "final_nll": final_nll}


def add_to_weight(model, arch: Arch, layer: int, delta_out_in: torch.Tensor) -> None:
    """W += delta, with delta given as (d_out, d_in); transposed for a Conv1D matrix."""
    module = model.get_submodule(arch.mlp_out_path(layer))
    update = delta_out_in.T if is_conv1d(module) else delta_out_in
    with torch.no_grad():
        module.weight.add_(update.to(module.weight.dtype))


def weight_as_out_in(model, arch: Arch, layer: int) -> torch.Tensor:
    """The rewritten matrix as (d_out, d_in) whatever its stored layout."""
    module = model.get_submodule(arch.mlp_out_path(layer))
    return module.weight.T if is_conv1d(module) else module.weight
