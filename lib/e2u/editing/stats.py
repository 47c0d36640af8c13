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
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from ..arch import Arch
from ..files import atomic_path, e2u_home
from ..hooks import trace
from ..models import model_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    """Texts to collect statistics on; `name` says where they came from (recorded in the book)."""

    name: str
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\x00".join(self.texts).encode()).hexdigest()[:16]


_SAMPLE_PROMPTS = (
    "The", "In 1990,", "According to", "Scientists", "The history of", "Many people", "A recipe for",
    "The city of", "Music", "Football", "The government", "Technology", "Question:", "My favourite book",
    "Water", "The war",
)


@torch.no_grad()
def model_samples_corpus(model, tokenizer, n_texts: int = 64, length: int = 128, seed: int = 0) -> Corpus:
    """Text sampled from the model itself: the offline corpus for the embedded default.

    Half the prompts are plain text, half are chat-formatted questions, so the keys of both kinds
    of input are represented. Cached under `$E2U_HOME/corpora/`.
    """
    from ..prompts import render_question

    cache = e2u_home() / "corpora" / f"{model_fingerprint(model)}-n{n_texts}-l{length}-s{seed}.json"
    if cache.is_file():
        try:
            return Corpus(f"model samples ({n_texts} x {length} tokens, seed {seed})", tuple(json.loads(cache.read_text())))
        except (json.JSONDecodeError, TypeError):
            log.warning("corpus cache %s is unreadable; sampling again", cache)
    device = next(model.parameters()).device
    prompts = []
    for i in range(n_texts):
        seed_text = _SAMPLE_PROMPTS[i % len(_SAMPLE_PROMPTS)]
        prompts.append(render_question(tokenizer, f"Tell me about {seed_text.lower().rstrip(':,')}.") if i % 2 else seed_text)
    texts = []
    tokenizer.padding_side = "left"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in tqdm(range(0, n_texts, 16), desc="sample corpus", leave=False, disable=None):
            batch = tokenizer(prompts[start : start + 16], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=length, do_sample=True, top_k=50, pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out, skip_special_tokens=False)
    texts = [t.replace(tokenizer.pad_token, "") if tokenizer.pad_token else t for t in texts]
    with atomic_path(cache, ".json") as tmp:
        tmp.write_text(json.dumps(texts))
    return Corpus(f"model samples ({n_texts} x {length} tokens, seed {seed})", tuple(texts))


def text_file_corpus(path: str | Path) -> Corpus:
    """A local text file, one document per blank-line-separated paragraph."""
    text = Path(path).read_text(encoding="utf-8")
    return Corpus(f"text file {Path(path).name}", tuple(p.strip() for p in text.split("\n\n") if p.strip()))


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
