"""Second-moment statistics C = E[k k^T] of a rewritten matrix's input (ROME section 3.1, `layer_stats`).

Streamed over a text corpus with a token budget; one forward pass per batch serves every
requested layer and stops after the deepest one. Accumulated in float64 or float32 by choice.
Results are cached on disk under `$E2U_HOME/stats/`, keyed by (model fingerprint, layer, corpus,
token count, dtype, max length); the key is stored inside the file and checked on load, so a
truncated file or one from another model is recomputed, never silently used.
"""

from __future__ import annotations

import logging
from types import MappingProxyType

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from e2u import cache
from e2u.editing.corpus import Corpus, statistics_corpus
from e2u.errors import E2UError
from e2u.model.arch import Arch
from e2u.model.batching import padded
from e2u.model.hooks import trace
from e2u.model.load import input_device, require_own_statistics, statistics_fingerprint

log = logging.getLogger(__name__)

MOMENT_DTYPES = MappingProxyType({"float32": torch.float32, "float64": torch.float64})


def _cache_key(fingerprint: str, layer: int, corpus: Corpus, n_tokens: int, dtype: torch.dtype, max_length: int) -> dict:
    return {"model": fingerprint, "layer": layer, "corpus": corpus.digest, "n_tokens": n_tokens,
            "dtype": str(dtype), "max_length": max_length}


def _cache_path(key: dict):
    return cache.entry_path(f"stats/{key['model']}", key, ".safetensors", prefix=f"layer{key['layer']}-")


@torch.no_grad()
def second_moments(
    model, tokenizer, arch: Arch, layers: list[int], corpus: Corpus, n_tokens: int = 20_000,
    max_length: int = 256, dtype: torch.dtype = torch.float32, batch_tokens: int = 4096, use_cache: bool = True,
) -> dict[int, torch.Tensor]:
    """E[k k^T] (d_k x d_k, on the CPU) of the input of each layer's rewritten matrix."""
    fingerprint = statistics_fingerprint(model)
    keys = {layer: _cache_key(fingerprint, layer, corpus, n_tokens, dtype, max_length) for layer in layers}
    found = {layer: (cache.read_tensors(_cache_path(key), key) or {}).get("mom2") for layer, key in keys.items()} \
        if use_cache else {}
    todo = [layer for layer in layers if found.get(layer) is None]
    if todo:
        require_own_statistics(model, f"the key second moments of layers {todo}")
        found.update(_accumulate(model, tokenizer, arch, todo, corpus, n_tokens, max_length, dtype, batch_tokens))
        for layer in todo:
            if use_cache:
                cache.write_tensors(_cache_path(keys[layer]), keys[layer], {"mom2": found[layer]})
    return {layer: found[layer] for layer in layers}


def _accumulate(model, tokenizer, arch, layers, corpus, n_tokens, max_length, dtype, batch_tokens):
    # Keys leave the model in its dtype (bf16 on a GPU) and are summed in `dtype` (float32 or float64)
    # on the input device, whichever device their layer sits on (device_map="auto").
    device = input_device(model)
    paths = {layer: arch.mlp_out_path(layer) for layer in layers}
    sums = {layer: torch.zeros(arch.key_size, arch.key_size, dtype=dtype, device=device) for layer in layers}
    docs = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] for t in corpus.texts]
    docs = [d for d in docs if d]
    seen = 0
    bar = tqdm(total=n_tokens, desc=f"second moments, layers {layers}", leave=False, disable=None)
    index = 0
    while seen < n_tokens and index < len(docs):
        batch = []
        while index < len(docs) and (len(batch) + 1) * max(len(d) for d in batch + [docs[index]]) <= batch_tokens:
            batch.append(docs[index])
            index += 1
        if not batch:
            batch, index = [docs[index]], index + 1
        ids, mask = padded(batch, tokenizer.pad_token_id, "right", device)
        with trace(model, list(paths.values()), retain_input=True, stop=True) as t:
            model(input_ids=ids, attention_mask=mask)
        keep = mask.bool()
        take = min(int(keep.sum()), n_tokens - seen)
        for layer, path in paths.items():
            keys = t.inputs[path].to(device)[keep][:take].to(dtype)
            sums[layer] += keys.T @ keys
        seen += take
        bar.update(take)
    bar.close()
    if seen < n_tokens:
        log.warning("corpus %s holds only %d of the %d tokens asked for", corpus.name, seen, n_tokens)
    return {layer: (total / max(seen, 1)).cpu() for layer, total in sums.items()}


@torch.no_grad()
def plain_second_moments(model, tokenizer, arch: Arch, layers: list[int], corpus: Corpus, n_tokens: int,
                         max_length: int = 256) -> dict[int, torch.Tensor]:
    """The definition, as the reference `layer_stats` computes it: one full forward pass per layer over
    the corpus, one document at a time. `second_moments` must agree (tests/editing/test_stats.py,
    bench/stats_bench.py)."""
    device = input_device(model)
    out = {}
    for layer in layers:
        path, total, seen = arch.mlp_out_path(layer), None, 0
        for text in corpus.texts:
            if seen >= n_tokens:
                break
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]], device=device)
            if ids.shape[1] == 0:
                continue
            with trace(model, [path], retain_input=True) as t:
                model(input_ids=ids)
            keys = t.inputs[path][0][: n_tokens - seen].to(device).float()
            total = keys.T @ keys if total is None else total + keys.T @ keys
            seen += keys.shape[0]
        out[layer] = (total / seen).cpu()
    return out


def layer_moments(model, tokenizer, arch: Arch, layers: list[int], hp) -> tuple[dict[int, torch.Tensor], str]:
    """E[k k^T] of every edited layer from one pass over the corpus that `hp.mom2_corpus` names."""
    if hp.mom2_dtype not in MOMENT_DTYPES:
        raise E2UError(f"hyper-parameter mom2_dtype: expected one of {sorted(MOMENT_DTYPES)}, got {hp.mom2_dtype!r}")
    corpus = statistics_corpus(model, tokenizer, hp.mom2_corpus, hp.mom2_corpus_texts, hp.seed)
    dtype = MOMENT_DTYPES[hp.mom2_dtype]
    return second_moments(model, tokenizer, arch, layers, corpus, hp.mom2_n_tokens, hp.mom2_max_length, dtype), corpus.name
