"""Negative preference optimisation (NPO; Zhang et al. 2024), with a retain NLL term (open-unlearning's NPO):
DPO's loss with the rejected answer only, which bounds how far gradient ascent can push.

    L = -(2 / beta) mean log sigmoid( beta (L_theta(a) - L_ref(a)) ) + alpha NLL(retain)

(-beta log pi_theta / pi_ref in NPO's notation, with log pi = -L)

L: summed answer NLL. At the start L_theta = L_ref and the forget term is (2 / beta) log 2; beta 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from e2u.hparams import real_number
from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import mean_nll, reference_sequence_nll, sequence_nll


@dataclass
class NPOHParams(UnlearnHParams):
    beta: float = 0.1

    def extra_rules(self) -> dict:
        return {**super().extra_rules(), "beta": (lambda v: real_number(v) and v > 0, "a positive number")}


def forget_term(gain, beta: float):
    """-(2 / beta) mean log sigmoid(beta gain), gain = L_theta(a) - L_ref(a) per forget answer (the equation above)."""
    return -(2 / beta) * F.logsigmoid(beta * gain).mean()


def loss(model, forget, retain, reference, hp):
    nll = sequence_nll(model, forget.answer)
    gain = nll - reference_sequence_nll(reference, forget.answer)  # L_theta(a) - L_ref(a)
    terms = {"forget": forget_term(gain, hp.beta), "nll_gain": gain.detach().mean()}
    if retain is not None:
        terms["retain"] = mean_nll(model, retain)
    return terms


apply = training_method(loss, "npo")
