"""SimNPO (Fan et al. 2024): NPO without a reference model, on the length-normalised answer NLL, plus retain NLL.

    L = -(2 / beta) mean log sigmoid( beta (L_theta(a) / |a| - delta) ) + alpha NLL(retain)

open-unlearning's defaults: beta 4.5, delta 0, gamma 0.125 (its `npo_coeff`), alpha 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from e2u.hparams import real_number
from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import mean_nll, sequence_nll


@dataclass
class SimNPOHParams(UnlearnHParams):
    beta: float = 4.5
    delta: float = 0.0
    forget_coeff: float = 0.125

    def extra_rules(self) -> dict:
        return {**super().extra_rules(), "beta": (lambda v: real_number(v) and v > 0, "a positive number"),
                "delta": (real_number, "a number")}


def loss(model, forget, retain, reference, hp):
    per_token = sequence_nll(model, forget.answer, normalise=True)
    terms = {"forget": -(2 / hp.beta) * F.logsigmoid(hp.beta * (per_token - hp.delta)).mean(),
             "forget_nll": per_token.detach().mean()}
    if retain is not None:
        terms["retain"] = mean_nll(model, retain)
    return terms


apply = training_method(loss, "simnpo")
