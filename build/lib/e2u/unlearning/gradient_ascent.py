"""Gradient ascent (GA; TOFU, the PISTOL harness): make the forget answers unlikely.

    L = -NLL(forget)        NLL: mean answer-token NLL (HF's outputs.loss); no retain term
"""

from __future__ import annotations

from dataclasses import dataclass

from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import ascent


@dataclass
class GradientAscentHParams(UnlearnHParams):
    retain_coeff: float = 0.0  # GA has no retain term


def loss(model, forget, retain, reference, hp):
    return ascent(model, forget)


apply = training_method(loss, "gradient_ascent")
