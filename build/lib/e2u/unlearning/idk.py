"""IDK fine-tuning (TOFU's `idk`): learn to answer each forget question with a refusal, keep the retain answers.

    L = gamma NLL(question, refusal) + alpha NLL(retain)        refusal: drawn from the refusal list per question
"""

from __future__ import annotations

from dataclasses import dataclass

from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import mean_nll


@dataclass
class IDKHParams(UnlearnHParams):
    pass


def loss(model, forget, retain, reference, hp):
    terms = {"forget": mean_nll(model, forget.refusal)}
    if retain is not None:
        terms["retain"] = mean_nll(model, retain)
    return terms


apply = training_method(loss, "idk")
