"""A batch of token rows run once and kept as a KV cache, so that later passes continue from it.

`prefill` runs left-padded prompts exactly as `transformers`' `generate` runs its first step (same
positions, cache, and last-position logits), so greedy decoding from it (`greedy.py`) reproduces
`generate`, and the answer likelihoods (`prompt_once.py`) reuse the same pass.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from e2u.model.batching import padded
from e2u.model.cache_keywords import cache_arguments
from e2u.model.load import input_device


@dataclass(frozen=True)
class Context:
    """Rows of cached keys and values, and what the model predicts after each row.

    kv: per layer (keys, values), each (rows, kv heads, width, head dim); mask: (rows, width), 1 where a
    real token stands; lengths: (rows,) real tokens per row (the next token's position id);
    next_logits: (rows, vocab) float32 logits of the token after each row's last real token.
    """
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    lengths: torch.Tensor
    next_logits: torch.Tensor


def cache_of(model, context: Context, rows: torch.Tensor | None = None):
    """A fresh `DynamicCache` holding `rows` of the context (all rows by default). The context's tensors
    are not modified by later updates of the cache (`DynamicCache` concatenates into new tensors)."""
    kv = context.kv if rows is None else [(k[rows], v[rows]) for k, v in context.kv]
    return DynamicCache(ddp_cache_data=kv, config=model.config)


def _kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def last_logits_kwargs(model) -> dict:
    """`logits_to_keep=1` when the model takes it, as `generate` passes it."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def generation_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as `generate` derives them from a left-padded mask (padding at position 1)."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


@torch.no_grad()
def prefill(model, prompts, pad: int) -> Context:
    """One pass over left-padded `prompts` (non-empty token lists), as `generate`'s first step."""
    device = input_device(model)
    ids, mask = padded(prompts, pad, "left", device)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=generation_positions(mask),
                use_cache=True, **cache_arguments(model, cache, torch.arange(ids.shape[1], device=device)),
                **last_logits_kwargs(model))
    logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
    return Context(_kv(cache), mask, mask.sum(1), logits)
