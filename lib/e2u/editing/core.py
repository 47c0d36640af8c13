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


@dataclass
class _ValueRows:
    """The prompts one request's value optimisation runs: its templated prompts, then the KL prompt."""

    ids: list[list[int]]
    sites: list[int]  # key-token index in each row
    targets: list[tuple[int, list[int]]]  # (first label position, label ids) for each templated row


def _value_rows(tokenizer, request: EditRequest, templates: list[str]) -> _ValueRows:
    target = encode_answer(tokenizer, request.target, with_eos=request.eos)
    ids, sites, targets = [], [], []
    for template in templates:
        site = key_site(tokenizer, request, template)
        ids.append(site.ids + target[:-1])  # teacher forcing: the last target token is only a label
        sites.append(site.index)
        targets.append((len(site.ids) - 1, target))
    kl = _kl_site(tokenizer, request)
    return _ValueRows(ids + [kl.ids], sites + [kl.index], targets)


def optimise_value(
    model, tokenizer, request: EditRequest, templates: list[str], site_path: str, hp: ValueHParams,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`optimise_values` for one request: (v*, v0, log)."""
    return optimise_values(model, tokenizer, [request], templates, site_path, hp)[0]


def optimise_values(
    model, tokenizer, requests: list[EditRequest], templates: list[str], site_path: str, hp: ValueHParams,
) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """Find v*_i = v0_i + delta_i at `site_path` (an MLP or block output) so the model emits each target.

    Loss per request (ROME eq. 4 / MEMIT eq. 16): mean target NLL over its templated prompts
    + kl_factor * KL(p_initial || p) on its essence prompt + v_weight_decay * |delta| / |v0|^2,
    with |delta| clamped to clamp_norm_factor * |v0| after every Adam step. The requests share
    nothing but the forward pass: the losses are summed, each delta has its own Adam state, a
    request whose loss falls below `early_stop_loss` leaves the batch, so every request follows
    the trajectory it would follow alone. Returns (v*, v0, log) per request.

    The tokens before each key site cannot see delta (causal attention), so their keys and values
    are computed once (`_PrefixCache`) and every step runs only the tokens from the site on.
    """
    device = next(model.parameters()).device
    plans = [_value_rows(tokenizer, r, templates) for r in requests]
    prefix = _PrefixCache.build(model, plans, tokenizer.pad_token_id, device)
    head = model.get_output_embeddings()
    width = model.get_input_embeddings().weight.shape[1]
    delta = torch.zeros(len(requests), width, device=device, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    v0 = torch.zeros(len(requests), width, device=device)
    kl_init: dict[int, torch.Tensor] = {}
    histories: list[list[float]] = [[] for _ in requests]
    final_nll = [float("nan")] * len(requests)
    active = list(range(len(requests)))
    with frozen_parameters(model), torch.enable_grad():
        for step in range(hp.v_num_grad_steps):
            batch = _stack_rows(plans, active, tokenizer.pad_token_id, device)
            owner = torch.tensor(active, device=device)[batch["request"]]

            def add_delta(path, output):
                # Every row starts at its key site: column 0.
                if step == 0:
                    v0[owner[batch["first_rows"]]] = output[batch["first_rows"], 0].detach().float()
                output = output.clone()
                output[batch["rows"], 0] += delta[owner].to(output.dtype)
                return output

            optimiser.zero_grad()
            with trace(model, [site_path], edit_output=add_delta):
                hidden = prefix.run(model, batch)
            # The LM head only where a loss reads it: the vocabulary projection is a fifth of the cost.
            # (Base models end with their final norm; logit soft-capping, as in Gemma-2, is not applied.)
            logprobs = head(hidden[batch["read_rows"], batch["read_cols"]]).float().log_softmax(-1)
            n_labels = len(batch["label_ids"])
            token_nll = -logprobs[:n_labels].gather(1, batch["label_ids"].unsqueeze(1)).squeeze(1)
            row_nll = torch.zeros(len(batch["rows"]), device=device).index_add(0, batch["label_rows"], token_nll)
            row_nll = row_nll / batch["labels_per_row"].clamp(min=1)
            losses, done = [], []
            for slot, i in enumerate(active):
                template_rows = batch["template_rows"][slot]
                nll = row_nll[template_rows].mean()
                kl_logprobs = logprobs[n_labels + slot : n_labels + slot + 1]
                if i not in kl_init:
                    kl_init[i] = kl_logprobs.detach().clone()
                kl = F.kl_div(kl_logprobs, kl_init[i], log_target=True, reduction="batchmean")
                loss = nll + hp.kl_factor * kl + hp.v_weight_decay * delta[i].norm() / v0[i].norm() ** 2
                histories[i].append(round(loss.item(), 4))
                final_nll[i] = round(nll.item(), 4)
                if loss.item() < hp.early_stop_loss:
                    done.append(i)
                else:
                    losses.append(loss)
            frozen = delta.detach().clone()
            if losses:
                torch.stack(losses).sum().backward()
                optimiser.step()
            with torch.no_grad():
                keep = [i for i in active if i not in done]
                still = torch.ones(len(requests), dtype=torch.bool, device=device)
                still[keep] = False
                delta[still] = frozen[still]  # finished (or idle) requests do not move with Adam's momentum
                limit = hp.clamp_norm_factor * v0.norm(dim=1, keepdim=True)
                norms = delta.norm(dim=1, keepdim=True)
                delta.copy_(torch.where(norms > limit, delta * limit / norms.clamp(min=1e-12), delta))
            active = keep
            if not active:
                break
    return [
        (v0[i] + delta[i].detach(), v0[i].clone(), {"loss": histories[i], "steps": len(histories[i]), "final_nll": final_nll[i]})
        for i in range(len(requests))
    ]


@dataclass
class _PrefixCache:
    """Keys and values of every row's tokens before its key site, computed once for all steps.

    Rows are numbered over all requests in order (`_row_offsets`). Prefixes are right padded to the
    longest; the padding is masked out of every later step. `kv` is None when no row has a prefix.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]] | None
    mask: torch.Tensor  # (all rows, longest prefix)
    sites: torch.Tensor  # (all rows,): the prefix length = the key site's position

    @classmethod
    @torch.no_grad()
    def build(cls, model, plans: list[_ValueRows], pad_id: int, device) -> "_PrefixCache":
        ids = [row[:site] for plan in plans for row, site in zip(plan.ids, plan.sites)]
        sites = torch.tensor([len(p) for p in ids], dtype=torch.long, device=device)
        if not max(len(p) for p in ids):
            return cls(None, torch.zeros(len(ids), 0, dtype=torch.long, device=device), sites)
        prefix_ids, mask = _right_padded(ids, pad_id, device)
        # Unmasked: a real token attends only to earlier (real) ones; pad positions stay finite, masked later.
        out = model.base_model(input_ids=prefix_ids, attention_mask=torch.ones_like(mask), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return cls(kv, mask, sites)

    def run(self, model, batch: dict) -> torch.Tensor:
        """The last hidden states of the batch's suffixes, attending to their rows' cached prefixes."""
        from transformers import DynamicCache

        select = batch["prefix_rows"]
        width = batch["ids"].shape[1]
        positions = self.sites[select, None] + torch.arange(width, device=self.sites.device)
        cache = None
        if self.kv is not None:
            cache = DynamicCache(ddp_cache_data=[(k[select], v[select]) for k, v in self.kv], config=model.config)
        return model.base_model(
            input_ids=batch["ids"], attention_mask=torch.cat([self.mask[select], batch["mask"]], dim=1),
            position_ids=positions, past_key_values=cache, use_cache=cache is not None,
        ).last_hidden_state


def _stack_rows(plans: list[_ValueRows], active: list[int], pad_id: int, device) -> dict:
    """The active requests' rows from each key site on (right padded), with every index the loss needs.

    The positions the LM head reads are the label positions of every templated row (in order),
    then the key token (column 0) of each request's KL row.
    """
    offsets = [0]
    for plan in plans:
        offsets.append(offsets[-1] + len(plan.ids))
    suffixes, prefix_rows, request_of_row, first_rows, template_rows, kl_rows = [], [], [], [], [], []
    label_rows, label_cols, label_ids = [], [], []
    for slot, i in enumerate(active):
        plan = plans[i]
        first = len(suffixes)
        first_rows.append(first)
        template_rows.append(list(range(first, first + len(plan.targets))))
        kl_rows.append(first + len(plan.targets))
        suffixes += [row[site:] for row, site in zip(plan.ids, plan.sites)]
        prefix_rows += range(offsets[i], offsets[i + 1])
        request_of_row += [slot] * len(plan.ids)
        for k, (start, target) in enumerate(plan.targets):
            label_rows += [first + k] * len(target)
            label_cols += range(start - plan.sites[k], start - plan.sites[k] + len(target))
            label_ids += target
    ids, mask = _right_padded(suffixes, pad_id, device)
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return {
        "ids": ids, "mask": mask, "rows": as_long(list(range(len(suffixes)))), "prefix_rows": as_long(prefix_rows),
        "request": as_long(request_of_row), "first_rows": as_long(first_rows),
        "template_rows": [as_long(r) for r in template_rows],
        "label_rows": as_long(label_rows), "label_ids": as_long(label_ids),
        "labels_per_row": torch.bincount(as_long(label_rows), minlength=len(suffixes)).float(),
        "read_rows": as_long(label_rows + kl_rows), "read_cols": as_long(label_cols + [0] * len(kl_rows)),
    }


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
