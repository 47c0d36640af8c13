"""The KV cache's keywords: whatever transformers is installed, a cached continuation computes what one full pass
computes, and no call uses a keyword the installed version deprecates."""

from __future__ import annotations

import warnings

import torch
from conftest import make_tiny_llama
from transformers import DynamicCache

from e2u.model.cache_keywords import cache_arguments, layer_call_cache, output_cache
from e2u.model.kv_context import prefill


def test_a_cached_continuation_equals_the_full_pass_without_deprecated_keywords():
    model, tokenizer = make_tiny_llama()
    ids = torch.tensor([tokenizer.encode("what is the capital city of France ? Paris is")])
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # transformers 5 warns on `past_key_values=`
            cache = DynamicCache(config=model.config)
            model(input_ids=ids[:, :-1], use_cache=True,
                  **cache_arguments(model, cache, torch.arange(ids.shape[1] - 1)))
            out = model(input_ids=ids[:, -1:], use_cache=True,
                        **cache_arguments(model, cache, torch.tensor([ids.shape[1] - 1])))
    torch.testing.assert_close(out.logits[:, -1], full, rtol=1e-5, atol=1e-5)
    assert output_cache(out).get_seq_length() == ids.shape[1]


def test_the_prefill_cache_is_found_by_blocks_and_outputs():
    model, tokenizer = make_tiny_llama()
    seen = []
    handle = model.model.layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(layer_call_cache(kwargs)), with_kwargs=True)
    try:
        prefill(model, [tokenizer.encode("the capital of Italy")], tokenizer.pad_token_id)
    finally:
        handle.remove()
    assert seen and seen[0] is not None, "a decoder block did not see the cache it was called with"
