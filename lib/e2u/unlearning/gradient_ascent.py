"""Gradient ascent (TOFU's GA): maximise the forget answers' NLL, L = -mean token NLL(forget)."""

from __future__ import annotations

from dataclasses import dataclass

from .loop import TrainHParams, train_on_forget


@dataclass
class GradientAscentHParams(TrainHParams):
    pass


def forget_loss(model, batch) -> "torch.Tensor":
    return -model(**batch).loss


def apply(model, tokenizer, records, hp: GradientAscentHParams):
    """Unlearn the (question, answer) pairs of `records` by gradient ascent."""
    pairs = [(r.question, r.answer) for r in records]
    return train_on_forget(model, tokenizer, pairs, hp, forget_loss, "gradient_ascent")
