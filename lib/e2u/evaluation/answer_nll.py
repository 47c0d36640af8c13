"""Mean token negative log-likelihood of answers given their prompts, batched.

`answer_nll` runs each distinct prompt once and continues every answer of it from the prompt's KV cache;
`_answer_nll_unshared` is its plain definition (one full pass per pair). `evaluate` uses the fast one.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache

from e2u.model.batching import IGNORE, padded, prompt_answer_batch
from e2u.model.cache_keywords import cache_arguments, output_cache
from e2u.model.load import input_device


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.no_grad()
def answer_nll(
    model, tokenizer, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], batch_size: int = 16
) -> list[float]:
    """Mean token negative log-likelihood of each answer given its prompt.

    Each distinct prompt runs once (left padded, batches of `batch_size` distinct prompts); its KV cache
    is copied to one row per answer, and the answers run after it (right padded, `batch_size` rows a
    call). Logits are computed only at the positions that predict answer tokens.
    """
    head = plain_lm_head(model)
    if head is None or any(len(p) == 0 for p in prompts):
        return _answer_nll_unshared(model, tokenizer, prompts, answers, batch_size)
    out: list[float] = [float("nan")] * len(prompts)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(i)
    distinct = sorted(groups, key=len)
    for start in range(0, len(distinct), batch_size):
        batch = distinct[start : start + batch_size]
        _shared_prompt_batch(model, head, tokenizer.pad_token_id, batch, [groups[p] for p in batch], answers,
                             batch_size, out)
    return out


def plain_lm_head(model):
    """The LM head when logits are exactly head(body(x)) (no soft-capping or scaling), else None."""
    config = model.config
    if model.base_model is model or getattr(config, "final_logit_softcapping", None) or hasattr(config, "logit_scale"):
        return None
    return model.get_output_embeddings()


def _shared_prompt_batch(model, head, pad: int, batch: list[tuple[int, ...]], members: list[list[int]],
                         answers: Sequence[Sequence[int]], batch_size: int, out: list[float]) -> None:
    """NLLs of every answer of the distinct prompts in `batch` (members[k]: the items of batch[k]), into `out`."""
    body, device = model.base_model, input_device(model)
    ids, mask = padded(batch, pad, "left", device)
    prompt_pass = body(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       use_cache=True)
    kv = [(layer.keys, layer.values) for layer in output_cache(prompt_pass).layers]
    # The last prompt position predicts each answer's first token.
    first_logp = torch.log_softmax(head(prompt_pass.last_hidden_state[:, -1]).float(), dim=-1)
    answers_after_prompts(model, head, pad, kv, mask, first_logp, members, answers, batch_size, out)


def answers_after_prompts(model, head, pad: int, kv: list, mask: torch.Tensor, first_logp: torch.Tensor,
                          members: list[list[int]], answers: Sequence[Sequence[int]], batch_size: int,
                          out: list[float]) -> None:
    """The answer passes of `answer_nll` after a left-padded prompt batch already run: `kv` its cache (per
    layer keys, values), `mask` its attention mask, `first_logp` the log-probabilities its last position
    gives; `members[k]`: the items whose prompt is row k. Mean token NLLs into `out`."""
    body, device = model.base_model, mask.device
    lengths = mask.sum(1)
    rows = sorted(((row, i) for row, items in enumerate(members) for i in items), key=lambda r: len(answers[r[1]]))
    sums: dict[int, torch.Tensor] = {}
    for row, i in rows:
        if len(answers[i]):
            sums[i] = -first_logp[row, answers[i][0]]
    # The answer pass feeds tokens a[:-1]; position j predicts a[j + 1]. One-token answers need no pass.
    longer = [(row, i) for row, i in rows if len(answers[i]) > 1]
    for start in range(0, len(longer), batch_size):
        chunk = longer[start : start + batch_size]
        # Feed a[:-1] right padded; the target of column j is a[j + 1] (IGNORE in the padding).
        answer_ids, answer_mask = padded([list(answers[i])[:-1] for _, i in chunk], pad, "right", device)
        answer_width = answer_ids.shape[1]
        targets = padded([list(answers[i])[1:] for _, i in chunk], IGNORE, "right", device)[0]
        select = torch.tensor([row for row, _ in chunk], device=device)
        cache = DynamicCache(ddp_cache_data=[(k[select], v[select]) for k, v in kv], config=model.config)
        valid = answer_mask.bool()
        hidden = body(
            input_ids=answer_ids, attention_mask=torch.cat([mask[select], answer_mask], dim=1),
            position_ids=lengths[select, None] + torch.arange(answer_width, device=device),
            use_cache=True, **cache_arguments(body, cache),
        ).last_hidden_state
        token_nll = torch.nn.functional.cross_entropy(head(hidden[valid]).float(), targets[valid], reduction="none")
        per_row = torch.zeros(len(chunk), device=device).index_add_(0, valid.nonzero()[:, 0], token_nll)
        for n, (_, i) in enumerate(chunk):
            sums[i] = sums[i] + per_row[n]
    for _, i in rows:
        out[i] = (sums[i] / len(answers[i])).item() if len(answers[i]) else 0.0


@torch.no_grad()
def _answer_nll_unshared(
    model, tokenizer, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], batch_size: int = 16
) -> list[float]:
    """Reference `answer_nll`: one full forward pass per (prompt, answer) pair, right padding."""
    device = input_device(model)
    out: list[float] = [float("nan")] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(answers[i]))
    for chunk in _batches(order, batch_size):
        batch = prompt_answer_batch([prompts[i] for i in chunk], [answers[i] for i in chunk],
                                    tokenizer.pad_token_id, device)
        labels = batch["labels"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE, reduction="none"
        )
        counts = (labels[:, 1:] != IGNORE).sum(1).clamp(min=1)
        for row, i in enumerate(chunk):
            out[i] = (token_nll[row].sum() / counts[row]).item()
    return out
