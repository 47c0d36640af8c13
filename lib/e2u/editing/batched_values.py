"""`values.optimise_value` for several requests at once, fast (MEMIT's `compute_z` for a batch).

The requests share nothing but the forward pass: the losses are summed, each delta has its own
Adam state, and a request whose loss falls below `early_stop_loss` leaves the batch, so every
request follows the trajectory it would follow alone. Two parts of every step's forward pass cannot
see delta, so they are computed once, without gradient:
* the tokens before each key site (causal attention): their keys and values (`_PrefixCache`), so
  every step runs only the tokens from the site on;
* the blocks below the one holding the edited module: the hidden states entering that block
  (`BlockInputs`), so every step starts there (ROME at layer 5 of 30 skips a sixth of the blocks).
The LM head runs only where the loss reads it. tests/editing/test_values.py checks the result against the
plain loop; bench/edit_bench.py and bench/rome_values_bench.py time both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from e2u.editing.block_inputs import BlockInputs
from e2u.editing.requests import EditRequest, key_site
from e2u.editing.values import ValueHParams, essence_site, frozen_parameters
from e2u.model.batching import padded
from e2u.model.cache_keywords import cache_arguments, output_cache
from e2u.model.hooks import trace
from e2u.model.load import input_device
from e2u.model.prompts import encode_answer


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
    kl = essence_site(tokenizer, request)
    return _ValueRows(ids + [kl.ids], sites + [kl.index], targets)


def optimise_values(
    model, tokenizer, requests: list[EditRequest], templates: list[str], site_path: str, hp: ValueHParams,
    skip_blocks: bool = True,
) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """`values.optimise_value` of every request (ROME eq. 4 / MEMIT eq. 16): (v*, v0, log) per request.

    delta, v0 and the losses are float32 whatever the model's dtype. `skip_blocks=False` runs every
    block at every step (the cost before `BlockInputs`, for benchmarks).
    """
    device = input_device(model)
    plans = [_value_rows(tokenizer, r, templates) for r in requests]
    prefix = _PrefixCache.build(model, plans, tokenizer.pad_token_id, device)
    everyone = _stack_rows(plans, list(range(len(requests))), tokenizer.pad_token_id, device)
    below = BlockInputs.build(model, site_path, prefix, everyone) if skip_blocks else BlockInputs.none()
    head = model.get_output_embeddings()
    width = model.get_input_embeddings().weight.shape[1]
    delta = torch.zeros(len(requests), width, device=device, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    v0 = torch.zeros(len(requests), width, device=device, dtype=torch.float32)
    kl_init: dict[int, torch.Tensor] = {}
    histories: list[list[float]] = [[] for _ in requests]
    final_nll = [float("nan")] * len(requests)
    active = list(range(len(requests)))
    with frozen_parameters(model), torch.enable_grad():
        for step in range(hp.v_num_grad_steps):
            batch = _stack_rows(plans, active, tokenizer.pad_token_id, device)
            owner = torch.tensor(active, device=device)[batch["request"]]

            def add_delta(path, output):
                # Every row starts at its key site: column 0. (The module may sit on another device.)
                if step == 0:
                    first = batch["first_rows"]
                    v0[owner[first]] = output[first.to(output.device), 0].detach().float().to(device)
                output = output.clone()
                output[batch["rows"].to(output.device), 0] += delta[owner].to(output.device, output.dtype)
                return output

            optimiser.zero_grad()
            with trace(model, [site_path], edit_output=add_delta), below.starting(model, batch):
                hidden = prefix.run(model, batch)
            # The LM head only where a loss reads it: the vocabulary projection is a fifth of the cost.
            # (Base models end with their final norm; logit soft-capping, as in Gemma-2, is not applied.)
            reads = hidden[batch["read_rows"].to(hidden.device), batch["read_cols"].to(hidden.device)]
            logprobs = head(reads).float().log_softmax(-1).to(device)
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
        prefix_ids, mask = padded(ids, pad_id, "right", device)
        # Unmasked: a real token attends only to earlier (real) ones; pad positions stay finite, masked later.
        out = model.base_model(input_ids=prefix_ids, attention_mask=torch.ones_like(mask), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in output_cache(out).layers]
        return cls(kv, mask, sites)

    def run(self, model, batch: dict) -> torch.Tensor:
        """The last hidden states of the batch's suffixes, attending to their rows' cached prefixes."""

        select = batch["prefix_rows"]
        width = batch["ids"].shape[1]
        positions = self.sites[select, None] + torch.arange(width, device=self.sites.device)
        cache = None
        if self.kv is not None:
            cache = DynamicCache(ddp_cache_data=[(k[select.to(k.device)], v[select.to(v.device)]) for k, v in self.kv],
                                 config=model.config)
        return model.base_model(
            input_ids=batch["ids"], attention_mask=torch.cat([self.mask[select], batch["mask"]], dim=1),
            position_ids=positions, use_cache=cache is not None, **cache_arguments(model.base_model, cache),
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
    ids, mask = padded(suffixes, pad_id, "right", device)
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return {
        "ids": ids, "mask": mask, "rows": as_long(list(range(len(suffixes)))), "prefix_rows": as_long(prefix_rows),
        "request": as_long(request_of_row), "first_rows": as_long(first_rows),
        "template_rows": [as_long(r) for r in template_rows],
        "label_rows": as_long(label_rows), "label_ids": as_long(label_ids),
        "labels_per_row": torch.bincount(as_long(label_rows), minlength=len(suffixes)).float(),
        "read_rows": as_long(label_rows + kl_rows), "read_cols": as_long(label_cols + [0] * len(kl_rows)),
    }
