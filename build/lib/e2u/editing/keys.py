"""Keys: the input of the rewritten MLP matrix at the subject's last token.

* context templates: short model-written prefixes over which keys are averaged (ROME section 3.1);
* k* = (1/N) sum_j k(x_j + p): the template-averaged key (ROME eq. 3; ROME's `compute_u` before the
  C^-1 step, MEMIT's `compute_ks`);
* the output of a module at each bare prompt's key token (MEMIT's current z at the last edited layer).
"""

from __future__ import annotations

import torch

from e2u.editing.requests import EditRequest, key_site
from e2u.model.arch import Arch
from e2u.model.batching import padded
from e2u.model.hooks import trace
from e2u.model.load import input_device

TEMPLATE_SEEDS = ("The", "Therefore", "Because", "I", "You")


def context_templates(model, tokenizer, count: int, length: int = 10, seed: int = 0) -> list[str]:
    """`["{}"]` plus `count` sampled prefixes of `length` tokens, each followed by `. {}`.

    Sampling uses its own seeded generator state, so calling this changes no global RNG.
    """
    if count <= 0:
        return ["{}"]
    device = input_device(model)
    texts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(count):
            ids = torch.tensor([tokenizer(TEMPLATE_SEEDS[i % len(TEMPLATE_SEEDS)])["input_ids"]], device=device)
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=length, do_sample=True,
                top_k=5, pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(out[0], skip_special_tokens=True).replace("{", "").replace("}", "")
            texts.append(" ".join(text.split()) + ". {}")
    return ["{}"] + texts


@torch.no_grad()
def _mean_at_sites(model, tokenizer, paths: dict, requests: list[EditRequest], templates: list[str], inputs: bool,
                   batch_size: int) -> dict:
    """Template-averaged input (or output) of each module in `paths` at every request's key token.

    One forward pass per batch serves every module, and stops after the deepest one.
    """
    device = input_device(model)
    sites = [key_site(tokenizer, r, t) for r in requests for t in templates]
    sums: dict = {}
    for start in range(0, len(sites), batch_size):
        chunk = sites[start : start + batch_size]
        ids, mask = padded([s.ids for s in chunk], tokenizer.pad_token_id, "right", device)
        with trace(model, list(paths.values()), retain_input=inputs, retain_output=not inputs, stop=True) as t:
            model(input_ids=ids, attention_mask=mask)
        rows = torch.arange(len(chunk), device=device)
        index = torch.tensor([s.index for s in chunk], device=device)
        owner = torch.tensor([(start + j) // len(templates) for j in range(len(chunk))], device=device)
        for name, path in paths.items():
            found = (t.inputs if inputs else t.outputs)[path].to(device)[rows, index].float()
            if name not in sums:
                sums[name] = torch.zeros(len(requests), found.shape[-1], device=device)
            sums[name].index_add_(0, owner, found)
    return {name: total / len(templates) for name, total in sums.items()}


def compute_keys(model, tokenizer, arch: Arch, layers: list[int], requests: list[EditRequest], templates: list[str],
                 batch_size: int = 32) -> dict[int, torch.Tensor]:
    """k* per layer: (n_requests, d_k), the template-averaged key (ROME eq. 3)."""
    paths = {layer: arch.mlp_out_path(layer) for layer in layers}
    return _mean_at_sites(model, tokenizer, paths, requests, templates, True, batch_size)


def outputs_at_keys(model, tokenizer, path: str, requests: list[EditRequest], batch_size: int = 32) -> torch.Tensor:
    """(n_requests, d): the output of module `path` at each bare prompt's key token."""
    return _mean_at_sites(model, tokenizer, {path: path}, requests, ["{}"], False, batch_size)[path]
