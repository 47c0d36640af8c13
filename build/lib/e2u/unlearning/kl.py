"""KL minimisation (TOFU's KL, the PISTOL harness): ascend on forget, stay close to the model before unlearning on
retain, at every position of the retain rows.

    L = -gamma NLL(forget) + alpha KL(p_ref || p_theta)(retain)      per position, averaged over positions
"""

from __future__ import annotations

from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.loop import training_method
from e2u.unlearning.terms import ascent, kl_to_reference

KLHParams = UnlearnHParams  # nothing of its own


def loss(model, forget, retain, reference, hp):
    terms = ascent(model, forget)
    if retain is not None:
        terms["retain"] = kl_to_reference(model, reference, retain)
    return terms


apply = training_method(loss, "kl")
