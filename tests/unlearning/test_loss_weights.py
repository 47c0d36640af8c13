"""Each unlearning baseline minimises w_f * forget term + w_r * retain term with the reference's weights.

The weights, written here from reference/unlearning.md and reference/paper-protocol.md, not read from the library:

| method | w_f | w_r | source |
| --- | --- | --- | --- |
| GA | 1 | 0 | TOFU, the PISTOL harness, open-unlearning's GradAscent: no retain term |
| GD | 1 | 1 | open-unlearning's GradDiff, gamma = alpha = 1; the harness's GD |
| KL | 1 | 1 | TOFU's KL / the harness's KL: -NLL(forget) + KL(retain) |
| DPO | 1 | 0 | the paper's harness (and original TOFU): no retain term (open-unlearning's IdkDPO adds alpha = 1) |
| NPO | 1 | 1 | open-unlearning: beta 0.1, alpha 1, gamma 1 |
| SimNPO | 0.125 | 1 | open-unlearning: gamma 0.125 (`npo_coeff`), alpha 1 |
| IDK | 1 | 1 | TOFU's idk: NLL(question, refusal) + NLL(retain) |
| RMU | 1 | 1 | open-unlearning: gamma 1, alpha 1 |

They must hold for the paper's 7B defaults and for the embedded model's tuned defaults (`hparams/*.yaml`) alike.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.methods import get_method, method_hparams
from e2u.problem import UnlearningProblem
from e2u.unlearning.loop import combined

REFERENCE_WEIGHTS = {"gradient_ascent": (1.0, 0.0), "gradient_difference": (1.0, 1.0), "kl": (1.0, 1.0),
                     "dpo": (1.0, 0.0), "npo": (1.0, 1.0), "simnpo": (0.125, 1.0), "idk": (1.0, 1.0),
                     "rmu": (1.0, 1.0)}
FAMILIES = ["llama-2-7b-chat", "smollm2-135m-instruct"]  # the paper's defaults, the embedded model's tuned ones

FORGET = [QARecord("what is the capital of France ?", "Paris"), QARecord("who wrote the book ?", "Rome")]
RETAIN = [QARecord("what is the capital of Italy ?", "Rome"), QARecord("where is the river ?", "in Japan"),
          QARecord("who painted the house ?", "the cat")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(REFERENCE_WEIGHTS))
def test_the_training_loss_weighs_forget_and_retain_terms_as_the_reference(name, family):
    """Stubbed terms (forget 3, retain 5): the loss the loop trains on is w_f * 3 + w_r * 5."""
    model, _ = make_tiny_llama()
    hp = method_hparams(name, model, family, {})
    w_forget, w_retain = REFERENCE_WEIGHTS[name]
    terms = {"forget": torch.tensor(3.0), "retain": torch.tensor(5.0), "forget_nll": torch.tensor(7.0)}
    assert combined(terms, hp).item() == pytest.approx(w_forget * 3.0 + w_retain * 5.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCE_WEIGHTS))
def test_weights_a_study_sets_by_open_unlearnings_names_are_the_ones_trained(name):
    """gamma and alpha (open-unlearning's names for w_f and w_r) replace the defaults: 2 * 3 + 0.5 * 5."""
    model, _ = make_tiny_llama()
    hp = method_hparams(name, model, "smollm2-135m-instruct", {"gamma": 2.0, "alpha": 0.5})
    terms = {"forget": torch.tensor(3.0), "retain": torch.tensor(5.0)}
    assert combined(terms, hp).item() == pytest.approx(2.0 * 3.0 + 0.5 * 5.0, abs=1e-6)


# what the tiny model needs to run each method (none of it a weight): few blocks, one step, no curve; a SimNPO
# margin delta near the tiny model's per-token NLL, so that its forget term is not ~0 (log sigmoid of a large number)
TINY = {"epochs": 1, "batch_size": 2, "curve_points": 0, "lr": 1e-6, "warmup": 0.0, "adapter": "full",
        "train_layers": 2, "lora_dropout": 0.0}
OWN = {"rmu": {"steer_layer": 2}, "simnpo": {"delta": 5.0}}


@pytest.mark.parametrize("name", sorted(REFERENCE_WEIGHTS))
def test_one_training_step_minimises_the_reference_weighted_sum_of_its_logged_terms(name):
    """Through the method's own `apply` (its defaults for the embedded model, its loss, the loop): the loss of the
    step equals w_f * forget + w_r * retain of the terms that step logged; a method without a retain term logs
    none. The reference model differs from the model (another seed), so the KL and RMU retain terms are not 0."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    hp = method_hparams(name, model, "smollm2-135m-instruct", {**TINY, **OWN.get(name, {})})
    problem = UnlearningProblem(FORGET, RETAIN, refusal="sampled",
                                load_reference=lambda: make_tiny_llama(seed=1, initializer_range=0.2)[0])
    deltas = get_method(name).apply(model, tokenizer, problem, hp)
    (step,) = deltas.log["step_log"]
    w_forget, w_retain = REFERENCE_WEIGHTS[name]
    assert ("retain" in step) == (w_retain > 0)
    assert abs(step["forget"]) > 0.05 and abs(step.get("retain", 1.0)) > 0.05  # a wrong weight would show
    expected = w_forget * step["forget"] + w_retain * step.get("retain", 0.0)
    assert step["loss"] == pytest.approx(expected, abs=3e-5)  # the log rounds each value to 5 decimals
