"""Seconds per edit for ROME, MEMIT and AlphaEdit, and seconds for statistics, against naive baselines.

Each method runs twice in the same process on the same requests from the same weights:
once as e2u does it (keys for all templates in one batched, early-stopped pass; value
optimisation over all templates in one batch with the LM head only where the loss reads it),
once with naive components swapped in (keys and outputs one prompt at a time in full passes; the
plain value loop `values.optimise_value`, one request and one prompt at a time, full logits). Both use the same cached statistics; the statistics themselves are timed
separately (5 layers, one early-stopped pass vs a full pass per layer). The weight changes of the
two runs are compared, so the speed-up is known not to change the result.

    python bench/edit_bench.py [--model smollm2-135m-instruct] [--requests 4] [--steps 10] [--tokens 4000]
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from unittest import mock

import torch

from e2u.data.sources import load_source
from e2u.editing import alphaedit, memit, rome
from e2u.editing.corpus import question_bank_corpus
from e2u.editing.layers import edited_layers
from e2u.editing.requests import key_site, unlearning_requests
from e2u.editing.stats import layer_moments, plain_second_moments, second_moments
from e2u.editing.values import optimise_value
from e2u.methods import method_hparams
from e2u.model.arch import find_arch
from e2u.model.hooks import trace
from e2u.model.load import load_model

EDITORS = {"rome": rome, "memit": memit, "alphaedit": alphaedit}


@torch.no_grad()
def naive_keys(model, tokenizer, arch, layers, requests, templates, batch_size: int = 32):
    """k* per layer: (n_requests, d_k), averaged over templates, one full pass per (request, template)."""
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


@torch.no_grad()
def naive_outputs_at_keys(model, tokenizer, path, requests, batch_size: int = 32):
    rows = []
    for request in requests:
        site = key_site(tokenizer, request)
        with trace(model, [path], retain_output=True) as t:
            model(input_ids=torch.tensor([site.ids]))
        rows.append(t.outputs[path][0, site.index].float())
    return torch.stack(rows)


def naive_optimise_values(model, tokenizer, requests, templates, site_path, hp):
    """The plain loop, one request after another (the reference code optimises each target on its own)."""
    return [optimise_value(model, tokenizer, r, templates, site_path, hp) for r in requests]


def naive_components() -> ExitStack:
    """Swap the naive keys/values/outputs into the modules that the three methods call."""
    stack = ExitStack()
    for module in (rome, memit, alphaedit):
        stack.enter_context(mock.patch.object(module, "compute_keys", naive_keys))
    for module in (rome, memit):
        stack.enter_context(mock.patch.object(module, "optimise_values", naive_optimise_values))
    stack.enter_context(mock.patch.object(memit, "outputs_at_keys", naive_outputs_at_keys))
    return stack


def timed_edit(model, tokenizer, name, requests, hp, originals):
    """(seconds, weight changes) of one method run; the weights are restored afterwards."""
    started = time.perf_counter()
    result = EDITORS[name].edit(model, tokenizer, requests, hp)
    seconds = time.perf_counter() - started
    deltas = {path: d.detach().clone() for path, d in result.deltas.items()}
    with torch.no_grad():
        for path, weight in originals.items():
            model.get_submodule(path).weight.copy_(weight)
    return seconds, deltas


def relative_difference(a: dict, b: dict) -> float:
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp(min=1e-12)).item() for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="value-optimisation steps (no early stop)")
    parser.add_argument("--tokens", type=int, default=4000, help="tokens for the statistics comparison")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    arch = find_arch(model)
    requests = unlearning_requests(load_source("mini")["forget"][: args.requests])
    originals = {arch.mlp_out_path(l): model.get_submodule(arch.mlp_out_path(l)).weight.detach().clone()
                 for l in range(arch.n_layers)}
    print(f"{args.model}: {args.requests} requests, {args.steps} value steps, {torch.get_num_threads()} threads")
    print(f"{'method':<10} {'naive s/edit':>13} {'e2u s/edit':>11} {'ratio':>7} {'max rel. diff':>14}")
    for name in ("rome", "memit", "alphaedit"):
        hp = method_hparams(name, model, args.model, {"v_num_grad_steps": args.steps, "early_stop_loss": 0.0})
        layers = edited_layers(hp.layer if name == "rome" else hp.layers, arch.n_layers, 1 if name == "rome" else 5)
        layer_moments(model, tokenizer, arch, layers, hp)  # warm the statistics cache for both runs
        fast_s, fast = timed_edit(model, tokenizer, name, requests, hp, originals)
        with naive_components():
            naive_s, naive = timed_edit(model, tokenizer, name, requests, hp, originals)
        n = len(requests)
        print(f"{name:<10} {naive_s / n:13.1f} {fast_s / n:11.1f} {naive_s / fast_s:6.2f}x {relative_difference(fast, naive):14.1e}")
    layers = [4, 5, 6, 7, 8]
    corpus = question_bank_corpus(tokenizer)
    started = time.perf_counter()
    slow = plain_second_moments(model, tokenizer, arch, layers, corpus, args.tokens, 256)
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    fast = second_moments(model, tokenizer, arch, layers, corpus, args.tokens, 256, use_cache=False)
    fast_s = time.perf_counter() - started
    error = max(((fast[l] - slow[l]).norm() / slow[l].norm()).item() for l in layers)
    print(f"{'statistics':<10} {naive_s:12.1f}s {fast_s:10.1f}s {naive_s / fast_s:6.2f}x {error:14.1e}"
          f"   ({len(layers)} layers, {args.tokens} tokens)")


if __name__ == "__main__":
    main()
