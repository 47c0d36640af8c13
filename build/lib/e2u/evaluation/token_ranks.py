"""Ranks of ground-truth tokens in greedy decoding's own logits, for the paper's MRR and Top-Hit ratio.

Editing as Unlearning (Li et al. 2025) follows the PISTOL harness (`eval_util.compute_MRR`): at generation
step j, the rank of the truth's j-th token in step j's distribution, along the model's own greedy prefix
(not teacher forced). Here rank = 1 + the number of vocabulary entries with a strictly larger logit (the
softmax keeps the order, so this is the softmax rank; tied entries share the best rank, where PISTOL's
argsort breaks ties by position). A truth token at a step the generation never reached (its row ended
with EOS earlier, or the step is beyond `max_new_tokens`) has rank None. PISTOL ranks it in zero-filled
logits instead, an arbitrary rank among ties. `greedy.greedy_continue` ranks while it decodes;
`ranks_along_generate` ranks `generate`'s stored logits, the plain definition.
"""

from __future__ import annotations

from typing import Sequence

import torch


def ranks_in_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(rows,) rank of `targets[r]` among `logits[r]` (rows, vocab): 1 + entries with a strictly larger logit."""
    chosen = logits.gather(-1, targets[:, None])
    return 1 + (logits > chosen).sum(-1)


def padded_targets(targets: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, longest) target ids right padded with 0, and (k,) their lengths."""
    width = max((len(t) for t in targets), default=0)
    ids = torch.zeros((len(targets), width), dtype=torch.long, device=device)
    for k, t in enumerate(targets):
        ids[k, : len(t)] = torch.tensor(list(t), dtype=torch.long, device=device)
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=device)
    return ids, lengths


def as_lists(ranks: torch.Tensor, lengths: Sequence[int]) -> list[list[int | None]]:
    """Per target its first `lengths[k]` ranks, 0 (not reached) as None."""
    rows = ranks.tolist()
    return [[r or None for r in row[:n]] + [None] * (n - len(row)) for row, n in zip(rows, lengths)]


def ranks_along_generate(step_logits: Sequence[torch.Tensor], generated: torch.Tensor, targets: Sequence[Sequence[int]],
                         eos: int | None) -> list[list[int | None]]:
    """Plain ranks from `generate(..., output_logits=True)`: `step_logits[j]` (rows, vocab) the logits of step j,
    `generated` (rows, steps) the new tokens, `targets[r]` the truth ids of row r. Row r reached step j when
    j < steps and no EOS is among its tokens before j."""
    out = []
    for row, target in enumerate(targets):
        tokens = generated[row].tolist()
        reached = tokens.index(eos) + 1 if eos in tokens else len(tokens)
        ranks: list[int | None] = []
        for j, token in enumerate(target):
            if j >= reached:
                ranks.append(None)
                continue
            logits = step_logits[j][row].float()
            ranks.append(1 + int((logits > logits[token]).sum()))
        out.append(ranks)
    return out
