"""Second-moment statistics C = E[k k^T] of a rewritten matrix's input (ROME section 3.1, `layer_stats`).

Streamed over a text corpus with a token budget; one forward pass per batch serves every
requested layer and stops after the deepest one. Accumulated in float64 or float32 by choice.
Results are cached on disk under `$E2U_HOME/stats/`, keyed by (model fingerprint, layer, corpus,
token count, dtype, max length); the key is stored inside the file and checked on load, so a
truncated file or one from another model is recomputed, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from ..arch import Arch
from ..files import atomic_path, e2u_home
from ..hooks import trace
from ..models import model_fingerprint
from .corpus import Corpus

log = logging.getLogger(__name__)


def _cache_key(fingerprint: str, layer: int, corpus: Corpus, n_tokens: int, dtype: torch.dtype, max_length: int) -> dict:
    return {"model": fingerprint, "layer": layer, "corpus": corpus.digest, "n_tokens": n_tokens,
            "dtype": str(dtype), "max_length": max_length}


def _cache_path(key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return e2u_home() / "stats" / key["model"] / f"layer{key['layer']}-{name}.safetensors"


def _load_cached(key: dict) -> torch.Tensor | None:
    from safetensors import safe_open

    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = json.loads((handle.metadata() or {}).get("key", "{}"))
            if stored != key:
                log.warning("statistics cache %s was made for %s, not %s; recomputing", path, stored, key)
                return None
            return handle.get_tensor("mom2")
    except Exception as exc:  # a truncated or foreign file: never trust it
        log.warning("statistics cache %s is unreadable (%s); recomputing", path, exc)
        return None


def _store(key: dict, moment: torch.Tensor) -> None:
    from safetensors.torch import save_file

    with atomic_path(_cache_path(key), ".safetensors") as tmp:
        save_file({"mom2": moment.contiguous().cpu()}, str(tmp), metadata={"key": json.dumps(key, sort_keys=True)})


@torch.no_grad()
def second_moments(
    model, tokenizer, arch: Arch, layers: list[int], corpus: Corpus, n_tokens: int = 20_000,
    max_length: int = 256, dtype: torch.dtype = torch.float32, batch_tokens: int = 4096, use_cache: bool = True,
) -> dict[int, torch.Tensor]:
    """E[k k^T] (d_k x d_k, on the CPU) of the input of each layer's rewritten matrix."""
    fingerprint = model_fingerprint(model)
    keys = {layer: _cache_key(fingerprint, layer, corpus, n_tokens, dtype, max_length) for layer in layers}
    found = {layer: _load_cached(key) for layer, key in keys.items()} if use_cache else {}
    todo = [layer for layer in layers if found.get(layer) is None]
    if todo:
        found.update(_accumulate(model, tokenizer, arch, todo, corpus, n_tokens, max_length, dtype, batch_tokens))
        for layer in todo:
            if use_cache:
                _store(keys[layer], found[layer])
    return {layer: found[layer] for layer in layers}


def _accumulate(model, tokenizer, arch, layers, corpus, n_tokens, max_length, dtype, batch_tokens):
    device = next(model.parameters()).device
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
        width = max(len(d) for d in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, d in enumerate(batch):
            ids[row, : len(d)] = torch.tensor(d)
            mask[row, : len(d)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with trace(model, list(paths.values()), retain_input=True, stop=True) as t:
            model(input_ids=ids, attention_mask=mask)
        keep = mask.bool()
        take = min(int(keep.sum()), n_tokens - seen)
        for layer, path in paths.items():
            keys = t.inputs[path][keep][:take].to(dtype)
            sums[layer] += keys.T @ keys
        seen += take
        bar.update(take)
    bar.close()
    if seen < n_tokens:
        log.warning("corpus %s holds only %d of the %d tokens asked for", corpus.name, seen, n_tokens)
    return {layer: (total / max(seen, 1)).cpu() for layer, total in sums.items()}


def layer_moments(model, tokenizer, arch: Arch, layers: list[int], hp) -> tuple[dict[int, torch.Tensor], str]:
    """E[k k^T] of every edited layer from one pass over the corpus that `hp.mom2_corpus` names."""
    from .corpus import statistics_corpus

    corpus = statistics_corpus(model, tokenizer, hp.mom2_corpus, hp.mom2_corpus_texts, hp.seed)
    dtype = torch.float64 if hp.mom2_dtype == "float64" else torch.float32
    return second_moments(model, tokenizer, arch, layers, corpus, hp.mom2_n_tokens, hp.mom2_max_length, dtype), corpus.name
