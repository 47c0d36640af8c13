"""Naive baselines for the editing benchmarks: what a direct port of the reference code does.

* keys: one full forward pass per (request, template), no early stop;
* values: one forward pass per template at every optimisation step, logits over every position;
* second moments: one full forward pass per layer over the corpus, one document at a time.

They compute the same quantities as `e2u.editing.core` / `stats` (the benchmarks check this),
only without batching, early stopping or the LM head restricted to the positions the loss reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from e2u.editing.core import _kl_site, frozen_parameters
from e2u.editing.requests import key_site
from e2u.hooks import trace
from e2u.prompts import encode_answer


@torch.no_grad()
def naive_keys(model, tokenizer, arch, layers, requests, templates, batch_size: int = 32):
    """k* per layer: (n_requests, d_k), averaged over templates, one full pass each."""
    out = {}
    for layer in layers:
        path, rows = arch.mlp_out_path(layer), []
        for request in requests:
            total = 0
            for template in templates:
                site = key_site(tokenizer, request, template)
                with trace(model, [path], retain_input=True) as t:
                    model(input_ids=torch.tensor([site.ids]))
                total = total + t.inputs[path][0, site.index].float()
            rows.append(total / len(templates))
        out[layer] = torch.stack(rows)
    return out


def naive_optimise_value(model, tokenizer, request, templates, site_path, hp):
    """The loss of `core.optimise_value`, computed one prompt at a time with full logits."""
    target = encode_answer(tokenizer, request.target, with_eos=request.eos)
    sites = [key_site(tokenizer, request, template) for template in templates]
    kl = _kl_site(tokenizer, request)
    delta = torch.zeros(model.get_input_embeddings().weight.shape[1], requires_grad=True)
    state = {}

    def run(ids, index):
        def add(path, output):
            if "v0" not in state:
                state["v0"] = output[0, index].detach().float().clone()
            output = output.clone()
            output[0, index] += delta
            return output

        with trace(model, [site_path], edit_output=add):
            return model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)

    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    history = []
    with frozen_parameters(model), torch.enable_grad():
        for _ in range(hp.v_num_grad_steps):
            optimiser.zero_grad()
            nll = 0
            for site in sites:
                logprobs = run(site.ids + target[:-1], site.index)
                start = len(site.ids) - 1
                picked = logprobs[start : start + len(target)].gather(1, torch.tensor(target)[:, None])
                nll = nll - picked.mean() / len(sites)
            kl_logprobs = run(kl.ids, kl.index)[kl.index : kl.index + 1]
            if "kl_init" not in state:
                state["kl_init"] = kl_logprobs.detach().clone()
            kl_term = F.kl_div(kl_logprobs, state["kl_init"], log_target=True, reduction="batchmean")
            loss = nll + hp.kl_factor * kl_term + hp.v_weight_decay * delta.norm() / state["v0"].norm() ** 2
            history.append(round(loss.item(), 4))
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                limit = hp.clamp_norm_factor * state["v0"].norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    return state["v0"] + delta.detach(), state["v0"], {"loss": history, "steps": len(history), "final_nll": round(float(nll.detach()), 4)}


def naive_optimise_values(model, tokenizer, requests, templates, site_path, hp):
    """One request after another (the reference code optimises each target on its own)."""
    return [naive_optimise_value(model, tokenizer, r, templates, site_path, hp) for r in requests]


@torch.no_grad()
def naive_outputs_at_keys(model, tokenizer, path, requests, batch_size: int = 32):
    rows = []
    for request in requests:
        site = key_site(tokenizer, request)
        with trace(model, [path], retain_output=True) as t:
            model(input_ids=torch.tensor([site.ids]))
        rows.append(t.outputs[path][0, site.index].float())
    return torch.stack(rows)


@torch.no_grad()
def naive_moments(model, tokenizer, arch, layers, corpus, n_tokens, max_length):
    """E[k k^T] with one full forward pass over the corpus per layer, one document at a time."""
    out = {}
    for layer in layers:
        path, total, seen = arch.mlp_out_path(layer), None, 0
        for text in corpus.texts:
            if seen >= n_tokens:
                break
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]])
            with trace(model, [path], retain_input=True) as t:
                model(input_ids=ids)
            keys = t.inputs[path][0][: n_tokens - seen].float()
            total = keys.T @ keys if total is None else total + keys.T @ keys
            seen += keys.shape[0]
        out[layer] = total / seen
    return out
