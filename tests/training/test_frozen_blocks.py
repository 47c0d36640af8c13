"""The frozen lower blocks computed once per row: the same run as the plain loop, at a fraction of its cost."""

import copy
from functools import partial

import pytest
import torch
from conftest import make_tiny_llama
from test_unlearning_loop import FORGET, RETAIN

from e2u.hparams import build_hparams
from e2u.methods import get_method
from e2u.model.arch import find_arch
from e2u.problem import UnlearningProblem
from e2u.training.frozen_blocks import frozen_lower_blocks
from e2u.unlearning import dpo, gradient_ascent, kl, npo, rmu, simnpo
from e2u.unlearning.batches import UnlearningData
from e2u.unlearning.loop import unlearn

LOSSES = {"gradient_ascent": gradient_ascent.loss, "kl": kl.loss, "dpo": dpo.loss, "npo": npo.loss,
          "simnpo": simnpo.loss}


def run(name, overrides, base, reuse):
    model, tokenizer = copy.deepcopy(base), make_tiny_llama()[1]
    method = get_method(name)
    hp = build_hparams(method.hparams, overrides, name)
    if name == "rmu":
        hp = hp.trained()
        loss = partial(rmu.loss, path=find_arch(model).layer_path(hp.steer_layer))
    else:
        loss = LOSSES[name]
    seen = []  # every micro-batch's terms, unrounded (the step log keeps 5 decimals)

    def recorded(*args):
        terms = loss(*args)
        seen.append({k: t.item() for k, t in terms.items()})
        return terms

    deltas = unlearn(model, tokenizer, UnlearningProblem(FORGET, RETAIN), hp, recorded, name, reuse_frozen=reuse)
    return model, deltas, seen


@pytest.mark.parametrize("name, overrides", [
    ("gradient_ascent", {"adapter": "lora", "train_layers": 2}),
    ("kl", {"adapter": "lora", "train_layers": 2}),  # KL averages over padding positions too
    ("dpo", {"adapter": "lora", "train_layers": 1}),  # the reference is the model with its adapter off
    ("npo", {"adapter": "lora", "train_layers": 3}),
    ("simnpo", {"adapter": "full", "train_layers": 2}),
    ("rmu", {"steer_layer": 3}),  # full weights on blocks 1-3; traces block 3 by its path
])
def test_stored_lower_block_states_give_the_plain_loops_losses_and_weights(name, overrides):
    base = make_tiny_llama(initializer_range=0.2)[0].double()  # float64: the two paths' rounding stays far below 1e-6
    hp = {"lr": 3e-3, "epochs": 3, "batch_size": 3, "lora_dropout": 0.1, **overrides}
    plain_model, plain, plain_terms = run(name, hp, base, reuse=False)
    fast_model, fast, fast_terms = run(name, hp, base, reuse=True)
    used = fast.log["frozen_lower_blocks"]
    assert used["passes_through_every_block"] == 0 and used["passes_from_stored_states"] > 0, used
    assert plain.log["frozen_lower_blocks"] == {"not reused": "switched off"}
    assert plain.log["steps"] == fast.log["steps"] > 0
    assert len(plain_terms) == len(fast_terms)
    for a, b in zip(plain_terms, fast_terms):
        for term in a:
            assert a[term] == pytest.approx(b[term], abs=1e-6), (term, a, b)
    plain_state, fast_state = plain_model.state_dict(), fast_model.state_dict()
    assert plain_state.keys() == fast_state.keys()
    worst = max((plain_state[k] - fast_state[k]).abs().max().item() for k in plain_state)
    assert worst <= 1e-6, worst
    assert any((plain_state[k] - base.state_dict()[k]).abs().max() > 1e-4 for k in plain_state)  # it did train


def test_a_pass_on_rows_it_does_not_hold_runs_every_block():
    model, tokenizer = make_tiny_llama()
    data = UnlearningData(tokenizer, FORGET, RETAIN, 2, 0, "cpu")
    store, why = frozen_lower_blocks(model, 2, data.pad_id, data.rows()[:4], data.forget_batch([0, 1]).answer)
    assert store is not None, why
    other = data.retain_batch([5, 4])
    inputs = {"input_ids": other["input_ids"], "attention_mask": other["attention_mask"], "use_cache": False}
    with torch.no_grad():
        plain = model(**inputs).logits
        with store.used():
            again = model(**inputs).logits
    assert torch.equal(plain, again)
    assert store.describe()["passes_through_every_block"] == 1


def test_nothing_is_stored_when_every_block_trains():
    model, tokenizer = make_tiny_llama()
    data = UnlearningData(tokenizer, FORGET, RETAIN, 2, 0, "cpu")
    store, why = frozen_lower_blocks(model, 0, data.pad_id, data.rows(), data.forget_batch([0]).answer)
    assert store is None and why == "every block trains"
