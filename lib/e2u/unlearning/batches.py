"""The data of an unlearning run: forget items, each paired with a retain item, as token batches.

Every row is rendered exactly as evaluation renders it (`prompts.question_ids`, the model's chat template) and
only the answer tokens (+ EOS) carry labels (TOFU's `mask=true`). Each forget item i is paired, in epoch e, with
the retain item drawn by `random.Random(f"{seed}:{e}:{i}")`: a fresh partner every epoch as in open-unlearning's
`ForgetRetainDataset`, but reproducible. A forget batch holds the question with its true answer and with a
refusal drawn from the project's refusal list (`data.refusals`, per question and seed): the rejected and the
preferred answer of DPO, the target of IDK fine-tuning.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from e2u.data.refusals import refusal_for
from e2u.errors import E2UError
from e2u.model.batching import prompt_answer_batch
from e2u.model.prompts import encode_answer, question_ids


@dataclass(frozen=True)
class ForgetBatch:
    answer: dict[str, torch.Tensor]  # question + true answer (labels on the answer)
    refusal: dict[str, torch.Tensor]  # question + a refusal
    items: tuple[int, ...]  # forget indices, in row order


class UnlearningData:
    """Tokenised forget and retain rows; `batches(epoch)` yields (forget batch, paired retain batch)."""
    def __init__(self, tokenizer, forget: Sequence, retain: Sequence, batch_size: int, seed: int, device):
        check_forget_and_retain(forget, retain)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.forget_prompts = [question_ids(tokenizer, r.question) for r in forget]
        self.forget_answers = [encode_answer(tokenizer, r.answer) for r in forget]
        self.refusals = [encode_answer(tokenizer, refusal_for(r.question, "sampled", seed)) for r in forget]
        self.retain_prompts = [question_ids(tokenizer, r.question) for r in retain]
        self.retain_answers = [encode_answer(tokenizer, r.answer) for r in retain]

    @property
    def n_forget(self) -> int:
        return len(self.forget_prompts)

    def rows(self) -> list[list[int]]:
        """Every token row a batch of this run can hold: each forget question with its answer and with its
        refusal, each retain question with its answer."""
        pairs = [*zip(self.forget_prompts, self.forget_answers), *zip(self.forget_prompts, self.refusals),
                 *zip(self.retain_prompts, self.retain_answers)]
        return [list(p) + list(a) for p, a in pairs]

    def batches_per_epoch(self) -> int:
        return -(-self.n_forget // self.batch_size)

    def partner(self, epoch: int, item: int) -> int | None:
        """The retain item paired with forget item `item` in `epoch` (None without retain items)."""
        if not self.retain_prompts:
            return None
        return random.Random(f"{self.seed}:{epoch}:{item}").randrange(len(self.retain_prompts))

    def batches(self, epoch: int):
        order = list(range(self.n_forget))
        random.Random(f"{self.seed}:{epoch}:order").shuffle(order)
        for start in range(0, len(order), self.batch_size):
            items = order[start : start + self.batch_size]
            yield self.forget_batch(items), self.retain_batch([self.partner(epoch, i) for i in items])

    def forget_batch(self, items: Sequence[int]) -> ForgetBatch:
        prompts = [self.forget_prompts[i] for i in items]
        return ForgetBatch(self._batch(prompts, [self.forget_answers[i] for i in items]),
                           self._batch(prompts, [self.refusals[i] for i in items]), tuple(items))

    def retain_batch(self, items: Sequence[int | None]) -> dict[str, torch.Tensor] | None:
        if not items or items[0] is None:
            return None
        return self._batch([self.retain_prompts[i] for i in items], [self.retain_answers[i] for i in items])

    def _batch(self, prompts, answers) -> dict[str, torch.Tensor]:
        return prompt_answer_batch(prompts, answers, self.pad_id, self.device)


def check_forget_and_retain(forget: Sequence, retain: Sequence) -> None:
    """An unlearning run needs forget items, and a retain set that shares no question with them."""
    if not forget:
        raise E2UError("unlearning: the forget set is empty; there is nothing to unlearn")
    forget_questions = {r.question.strip().lower() for r in forget}
    overlap = sorted({r.question for r in retain if r.question.strip().lower() in forget_questions})
    if overlap:
        shown = "; ".join(repr(q) for q in overlap[:5]) + (f" and {len(overlap) - 5} more" if len(overlap) > 5 else "")
        raise E2UError(f"unlearning: {len(overlap)} retain question(s) are also in the forget set: {shown}; "
                       "a question cannot be both forgotten and kept")
