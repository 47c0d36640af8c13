"""Gradient difference (GD; Liu et al. 2022, TOFU's grad_diff): ascend on forget, descend on the paired retain item.

    L = -gamma NLL(forget) + alpha NLL(retain)        gamma = alpha = 1
"""

from __future__ import annotations

from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import ascent, mean_nll

GradientDifferenceHParams = UnlearnHParams  # nothing of its own


def loss(model, forget, retain, reference, hp):
    terms = ascent(model, forget)
    if retain is not None:
        terms["retain"] = mean_nll(model, retain)
    return terms


apply = training_method(loss, "gradient_difference")
