"""Gradient ascent (TOFU's GA): maximise the forget answers' NLL, L = -mean token NLL(forget)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hparams import TrainingHParams
from .loop import answer_nll, train_on_forget


@dataclass
class GradientAscentHParams(TrainingHParams):
    pass


def forget_loss(model, batch) -> torch.Tensor:
    return -answer_nll(model, batch)


def apply(model, tokenizer, problem, hp: GradientAscentHParams):
    """Unlearn the problem's forget (question, answer) pairs by gradient ascent."""
    pairs = [(r.question, r.answer) for r in problem.forget]
    return train_on_forget(model, tokenizer, pairs, hp, forget_loss, "gradient_ascent")
