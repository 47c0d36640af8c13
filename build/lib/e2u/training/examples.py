"""Training examples: a prompt's token ids and the answer tokens learned after it (TOFU's masked labels).

Each record is rendered exactly as evaluation renders it (`prompts.question_ids`, then `prompts.encode_answer`:
answer + EOS); a batch is right-padded with labels on the answer tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from e2u.model.batching import prompt_answer_batch
from e2u.model.prompts import encode_answer, question_ids


@dataclass(frozen=True)
class Example:
    prompt: list[int]
    answer: list[int]  # answer tokens + EOS: the only labelled tokens

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.answer)

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(self.prompt + self.answer)


def examples_of(tokenizer, records) -> list[Example]:
    """Records (with .question/.answer, or (question, answer) pairs) as prompt and answer token ids."""
    out = []
    for record in records:
        question, answer = (record.question, record.answer) if hasattr(record, "question") else record
        out.append(Example(list(question_ids(tokenizer, question)), list(encode_answer(tokenizer, answer))))
    return out


def example_batch(examples: Sequence[Example], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and labels (IGNORE outside the answer)."""
    return prompt_answer_batch([e.prompt for e in examples], [e.answer for e in examples], pad_id, device)
