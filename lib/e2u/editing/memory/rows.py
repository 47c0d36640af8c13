"""The token rows GRACE and WISE train their memories on, and the forward pass that starts at the memory.

An edit row is the chat-rendered forget question followed by its refusal and EOS; a locality row is a
kept question followed by its true answer. The positions that matter are the *answer positions*: the
last prompt token and every answer token but the last, i.e. the positions whose next-token prediction
is an answer token. Those are the positions `generate` decides on, one by one, so those are where a
memory must answer for an edited question and stay silent for a kept one.

The memory sits in block L, so nothing below L ever changes while it trains: `upper_answer_logits`
starts each forward pass from the stored input of block L (`training.shortcuts.FrozenStates`, checked
against a full forward pass, dropped for a model where the two differ).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch

from e2u.evaluation.evaluate import generate_answers
from e2u.model.batching import IGNORE
from e2u.model.prompts import encode_answer, question_ids
from e2u.training.examples import Example, example_batch
from e2u.training.shortcuts import FrozenStates, answer_logits, shortcut_loss


@dataclass
class MemoryRows:
    """Right-padded rows: the first `n_edit` are edit rows, the rest locality rows."""
    examples: list[Example]
    batch: dict[str, torch.Tensor]
    n_edit: int

    @property
    def answer_positions(self) -> torch.Tensor:
        """(rows, length) bool: positions whose next token is an answer token."""
        labels = self.batch["labels"]
        where = torch.zeros_like(labels, dtype=torch.bool)
        where[:, :-1] = labels[:, 1:] != IGNORE
        return where

    @property
    def scored_batch(self) -> dict[str, torch.Tensor]:
        """The batch with labels on the edit rows only: the LM head then runs at their answer positions
        alone (a locality row needs its scores at the memory, never its logits)."""
        labels = self.batch["labels"].clone()
        labels[~self.is_edit_row] = IGNORE
        return {**self.batch, "labels": labels}

    @property
    def is_edit_row(self) -> torch.Tensor:
        rows = self.batch["input_ids"].shape[0]
        return torch.arange(rows, device=self.batch["input_ids"].device) < self.n_edit


def memory_rows(tokenizer, edits: Sequence[tuple[str, str]], locality: Sequence[tuple[str, str]], device) -> MemoryRows:
    """Rows for (question, target) edit pairs and (question, answer) locality pairs."""
    examples = [Example(list(question_ids(tokenizer, q)), list(encode_answer(tokenizer, a)))
                for q, a in [*edits, *locality]]
    return MemoryRows(examples, example_batch(examples, pad_id(tokenizer), device), len(edits))


def pad_id(tokenizer) -> int:
    """The id rows are padded with: the tokenizer's pad token, else its EOS (as finetuning pads)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class UpperPass:
    """Answer-position logits of memory rows, each forward pass starting at block `first`; rows are padded with
    the tokenizer's pad id (`pad_id`)."""
    def __init__(self, model, first: int, tokenizer):
        self.first = first
        self.pad_id = pad_id(tokenizer)
        self.states: FrozenStates | None = FrozenStates(first, share_prefix=False) if first > 0 else None

    def prepare(self, model, rows: MemoryRows) -> None:
        """Store (and check, once per new set of rows) the input of block `first` for every row."""
        if self.states is not None:
            loss = shortcut_loss(model, rows.examples, self.first, self.pad_id, batch_size=16, states=self.states)
            self.states = loss.states

    def logits(self, model, rows: MemoryRows) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits N x vocab, targets N) at the answer positions of the edit rows, in row-major order."""
        return answer_logits(model, rows.scored_batch, self.states, rows.examples if self.states is not None else ())


def edit_row_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL of the edit rows' answer tokens (`UpperPass.logits`)."""
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def edit_chunks(requests: Sequence, size: int) -> list[list]:
    """The requests in edits of `size` (1: one edit per request, sequential editing)."""
    return [list(requests[i : i + size]) for i in range(0, len(requests), size)]


def locality_pairs(model, tokenizer, problem, max_new_tokens: int = 32, memory=None) -> list[tuple[str, str]]:
    """(question, the unedited model's greedy answer) for each kept record (the problem's retain or neighbour
    records, never forget ones). Ours: WISE's locality rows are a question and its reference answer, but a
    chat model answers in sentences, and the memory must stay silent at every position generation decides
    on, so the rows hold what the model itself says. The answers are the unedited model's (`memory`, when one
    is attached, is bypassed), kept in the caller's cache (`problem.cached`): every memory cell of a setting
    asks the same kept questions (120 on the finetuned contracts, ~100 s)."""
    questions = [r.question for r in problem.retain]

    def generate():
        with memory.bypassed() if memory is not None else nullcontext():
            return generate_answers(model, tokenizer, [question_ids(tokenizer, q) for q in questions], max_new_tokens,
                                    batch_size=32)

    answers = problem.cached("locality", {"questions": questions, "max_new_tokens": max_new_tokens}, generate)
    return [(q, a if a.strip() else r.answer) for q, a, r in zip(questions, answers, problem.retain)]
