"""Each distinct prompt runs once: its prefill serves the greedy answer and every scored answer's likelihood.

`evaluate_records` needs, per question, the greedy answer and the NLLs of several answers (truth,
paraphrase, perturbations). `generate_answers` and `answer_nll` each run the same left-padded prompt
batches (distinct prompts sorted by length, `batch_size` a batch); here that pass runs once per batch, then
`greedy.greedy_continue` decodes from it (ranking the ground truth's tokens on the way, for MRR and Top-Hit)
and `answer_nll`'s answer passes score the answers after it.
With distinct prompts the batches, and so the greedy answers, are `generate_answers`' exactly; a repeated
prompt is run (and answered) once.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from e2u.evaluation.answer_nll import answers_after_prompts, plain_lm_head
from e2u.evaluation.greedy import greedy_continue, plain_greedy
from e2u.model.kv_context import prefill


def shares_prompt_pass(model, prompts: Sequence[Sequence[int]]) -> bool:
    """Whether `generate_and_score` applies: logits are head(body(x)), decoding is plain greedy, no empty prompt."""
    return plain_lm_head(model) is not None and plain_greedy(model) and all(len(p) for p in prompts)


def generate_and_score(
    model, tokenizer, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[Sequence[int]]],
    max_new_tokens: int = 32, batch_size: int = 16, progress: bool = False,
    targets: Sequence[Sequence[int]] | None = None,
) -> tuple[list[str], list[list[float]], list[list[int | None]] | None]:
    """(greedy answer of each prompt, mean token NLL of each of `answers[i]` after prompt i, and with `targets`
    the rank of each token of `targets[i]` along prompt i's greedy decoding, `greedy_continue`'s).

    The answers run after the prefill in `answer_nll`'s passes, so the NLLs are `answer_nll`'s exactly.
    """
    rows_of: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        rows_of.setdefault(tuple(prompt), []).append(i)
    distinct = sorted(rows_of, key=len)
    generated: list[str] = [""] * len(prompts)
    nll: list[list[float]] = [[] for _ in prompts]
    ranks: list[list[int | None]] | None = None if targets is None else [[] for _ in prompts]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    batches = [distinct[start : start + batch_size] for start in range(0, len(distinct), batch_size)]
    for batch in tqdm(batches, desc="generate and score", disable=not progress, leave=False):
        context = prefill(model, batch, pad)
        owners = [rows_of[p] for p in batch]
        ranked = [(row, i) for row, items in enumerate(owners) for i in items] if targets is not None else []
        tokens, found = greedy_continue(model, context, max_new_tokens, eos, pad,
                                        None if targets is None else [targets[i] for _, i in ranked],
                                        [row for row, _ in ranked])
        tokens = tokens.tolist()
        for (_, i), r in zip(ranked, found or []):
            ranks[i] = r
        values = _answer_passes(model, context, owners, answers, pad, batch_size)
        for row, items in enumerate(owners):
            text = tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
            start = 0
            for i in items:
                generated[i] = text
                nll[i] = values[row][start : start + len(answers[i])]
                start += len(answers[i])
    return generated, nll, ranks


def _answer_passes(model, context, owners: list[list[int]], answers, pad: int, batch_size: int) -> list[list[float]]:
    """`answer_nll`'s answer passes after the prefill: per row, the NLLs of its prompts' answers in order."""
    flat, members = [], []
    for items in owners:
        members.append(list(range(len(flat), len(flat) + sum(len(answers[i]) for i in items))))
        flat += [a for i in items for a in answers[i]]
    out = [float("nan")] * len(flat)
    first_logp = torch.log_softmax(context.next_logits, dim=-1)
    with torch.no_grad():
        answers_after_prompts(model, plain_lm_head(model), pad, context.kv, context.mask, first_logp, members, flat,
                              batch_size, out)
    return [[out[k] for k in row] for row in members]
