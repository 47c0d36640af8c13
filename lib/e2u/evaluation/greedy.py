"""Greedy decoding continued from a prefilled prompt batch: the steps of `transformers`' `generate`.

`generate` with `do_sample=False` runs the prompts (its prefill), then one token per step: argmax of the
float32 last-position logits, padding for rows that already produced EOS, the attention mask grown by one,
until every row is done or `max_new_tokens` are out. `greedy_continue` takes the same steps with the same
model calls, so its tokens equal `generate`'s (tests/evaluation/test_evaluation_speed.py checks it), while the
prefill (`kv_context.prefill`) stays available to score answers after the same prompts.
It applies no logits processor: `plain_greedy` says whether the model's generation config asks for none.
Given ground-truth `targets` it also ranks them in each step's logits (the paper's MRR and Top-Hit ratio).
"""

from __future__ import annotations

from typing import Sequence

import torch

from e2u.evaluation.token_ranks import as_lists, padded_targets, ranks_in_logits
from e2u.model.cache_keywords import cache_arguments
from e2u.model.kv_context import Context, cache_of, last_logits_kwargs

# Generation settings under which `generate` would not be plain greedy decoding (a logits processor, beams,
# another cache), with the values that leave it alone.
_NEUTRAL = {
    "repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0), "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "sequence_bias": (None,), "exponential_decay_length_penalty": (None,), "forced_decoder_ids": (None,),
    "guidance_scale": (None, 1.0), "watermarking_config": (None,), "renormalize_logits": (None, False),
    "prefill_chunk_size": (None,), "cache_implementation": (None,), "num_beams": (None, 1),
    "penalty_alpha": (None,), "dola_layers": (None,),
}


def plain_greedy(model) -> bool:
    """True when the model's generation config adds nothing to greedy decoding (no logits processor)."""
    config = getattr(model, "generation_config", None)
    return config is None or all(getattr(config, name, None) in neutral for name, neutral in _NEUTRAL.items())


@torch.no_grad()
def greedy_continue(
    model, context: Context, max_new_tokens: int, eos: int | None, pad: int,
    targets: Sequence[Sequence[int]] | None = None, target_rows: Sequence[int] | None = None,
) -> tuple[torch.Tensor, list[list[int | None]] | None]:
    """(rows, steps) greedy tokens after the prompts of `context` (from `prefill`), rows that ended holding
    `pad`; and with `targets`, per target the rank of its token j in step j's logits (`token_ranks`).

    `targets[k]` (token ids) is ranked along row `target_rows[k]` (row k by default); a step the row did not
    reach gives None. Ranking reads the logits decoding already has, and changes no token.
    """
    rows, width = context.mask.shape
    device = context.mask.device
    cache, mask, logits = cache_of(model, context), context.mask, context.next_logits
    unfinished = torch.ones(rows, dtype=torch.long, device=device)
    if targets is not None:
        owner = torch.tensor(list(range(len(targets)) if target_rows is None else target_rows), dtype=torch.long,
                             device=device)
        target_ids, lengths = padded_targets(targets, device)
        ranks = torch.zeros_like(target_ids)
    steps = []
    for step in range(max_new_tokens):
        token = logits.argmax(-1) * unfinished + pad * (1 - unfinished)
        steps.append(token)
        if targets is not None and step < target_ids.shape[1]:
            reached = unfinished[owner].bool() & (step < lengths)
            ranks[:, step] = ranks_in_logits(logits[owner], target_ids[:, step]) * reached
        if eos is not None:
            unfinished = unfinished & (token != eos).long()
        if step == max_new_tokens - 1 or unfinished.max() == 0:
            break
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=-1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                    use_cache=True, **cache_arguments(model, cache, torch.tensor([width + step], device=device)), **last_logits_kwargs(model))
        logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
    tokens = torch.stack(steps, 1) if steps else torch.zeros((rows, 0), dtype=torch.long, device=device)
    return tokens, (None if targets is None else as_lists(ranks, [len(t) for t in targets]))
