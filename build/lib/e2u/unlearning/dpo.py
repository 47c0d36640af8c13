"""DPO as unlearning (Rafailov et al. 2023; TOFU's idk-DPO, the PISTOL harness): prefer a refusal to the true
answer, relative to the model before unlearning. With L(y) the summed answer NLL of y given the question:

    L = -(2 / beta) mean log sigmoid( beta [ (L_theta(a) - L_ref(a)) - (L_theta(r) - L_ref(r)) ] )

(log pi = -L, so the bracket is DPO's log-ratio of the preferred minus that of the rejected answer)

r: a refusal drawn from the refusal list (preferred), a: the true answer (rejected); beta 0.1. The harness's DPO
has no retain term (retain_coeff 0); a positive retain_coeff adds alpha NLL(retain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from e2u.hparams import real_number
from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import mean_nll, reference_sequence_nll, sequence_nll


@dataclass
class DPOHParams(UnlearnHParams):
    beta: float = 0.1
    retain_coeff: float = 0.0

    def extra_rules(self) -> dict:
        return {**super().extra_rules(), "beta": (lambda v: real_number(v) and v > 0, "a positive number")}


def loss(model, forget, retain, reference, hp):
    rejected = sequence_nll(model, forget.answer) - reference_sequence_nll(reference, forget.answer)
    preferred = sequence_nll(model, forget.refusal) - reference_sequence_nll(reference, forget.refusal)
    terms = {"forget": -(2 / hp.beta) * F.logsigmoid(hp.beta * (rejected - preferred)).mean(),
             "rejected_gain": rejected.detach().mean(), "preferred_gain": preferred.detach().mean()}
    if retain is not None and hp.retain_coeff:
        terms["retain"] = mean_nll(model, retain)
    return terms


apply = training_method(loss, "dpo")
