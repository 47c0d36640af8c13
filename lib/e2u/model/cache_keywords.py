"""The KV cache's keywords across transformers 4.56 to 5.x.

transformers 5 renamed a model's `past_key_values=` argument and output to `cache` (the old name is deprecated
and goes in 5.40) and dropped `cache_position`, which 4.x models need beside a cache to place the new tokens.
These three functions give a call the names its model takes, so no caller spells either version's.
"""

from __future__ import annotations

import inspect

import torch


def _forward_parameters(model: torch.nn.Module):
    """The named arguments of the model class's own `forward` (a peft wrapper's generic one unwrapped)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inspect.signature(type(inner).forward).parameters


def cache_arguments(model: torch.nn.Module, cache, positions: torch.Tensor | None = None) -> dict:
    """Keyword arguments passing `cache` to `model`: `cache=` where the model takes it (transformers 5),
    else `past_key_values=` and, when given, `cache_position=` (the new tokens' indices in the cache)."""
    parameters = _forward_parameters(model)
    if "cache" in parameters:
        return {"cache": cache}
    arguments = {"past_key_values": cache}
    if positions is not None and "cache_position" in parameters:
        arguments["cache_position"] = positions
    return arguments


def output_cache(output):
    """The cache a forward pass returned (`output.cache` in transformers 5, `output.past_key_values` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def layer_call_cache(kwargs: dict):
    """The cache a decoder block was called with (`cache=` in transformers 5, `past_key_values=` before)."""
    cache = kwargs.get("cache")
    return cache if cache is not None else kwargs.get("past_key_values")
