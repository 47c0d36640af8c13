"""Token batches: rows of ids padded to one width, and prompt-answer batches whose labels cover the answer.

Every batch in e2u is built here: right padding for teacher-forced passes (the real tokens keep
positions 0..n-1), left padding for generation and for prompts whose last token must sit in the
last column. Nothing here touches a tokenizer: the pad id is passed in.
"""

from __future__ import annotations

from typing import Sequence

import torch

IGNORE = -100  # the label that cross-entropy skips


def padded(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (len(rows), longest row), padded on `side` ('right' or 'left')."""
    if side not in ("right", "left"):
        raise ValueError(f"side: expected 'right' or 'left', got {side!r}")
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        span = slice(0, len(tokens)) if side == "right" else slice(width - len(tokens), width)
        ids[row, span] = torch.tensor(list(tokens), dtype=torch.long)
        mask[row, span] = 1
    return ids.to(device), mask.to(device)


def prompt_answer_batch(prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad_id: int,
                        device=None) -> dict[str, torch.Tensor]:
    """Right-padded prompt + answer rows; `labels` is the answer where it stands, IGNORE elsewhere."""
    ids, mask = padded([list(p) + list(a) for p, a in zip(prompts, answers)], pad_id, "right")
    labels = torch.full_like(ids, IGNORE)
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        labels[row, len(prompt) : len(prompt) + len(answer)] = torch.tensor(list(answer), dtype=torch.long)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
