"""Every baseline's loss against a hand computation on one fixed tiny batch (to 1e-5), from plain logits."""

import math
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.unlearning import dpo, gradient_ascent, gradient_difference, idk, kl, npo, rmu, simnpo
from e2u.unlearning.batches import UnlearningData

FORGET = [QARecord("what is the capital of France ?", "Paris"), QARecord("who wrote Hamlet ?", "William Shakespeare")]
RETAIN = [QARecord("what is the capital of Italy ?", "Rome"), QARecord("what colour is the sky ?", "blue")]


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = make_tiny_llama(seed=0)
    frozen, _ = make_tiny_llama(seed=1)  # a reference that differs from the model, so every ratio is non-trivial
    data = UnlearningData(tokenizer, FORGET, RETAIN, 2, 0, "cpu")
    forget, retain = data.forget_batch([0, 1]), data.retain_batch([1, 0])

    @contextmanager
    def reference():
        with torch.no_grad():
            yield frozen

    return model, frozen, forget, retain, reference


@torch.no_grad()
def hand_sequence_nll(model, batch) -> list[float]:
    """-sum_t log p(y_t | prefix) over the labelled tokens of each row, from the full logits, one token at a time."""
    log_probs = F.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    out = []
    for row in range(batch["labels"].shape[0]):
        total = 0.0
        for t in range(1, batch["labels"].shape[1]):
            token = int(batch["labels"][row, t])
            if token != -100:
                total -= float(log_probs[row, t - 1, token])
        out.append(total)
    return out


def hand_mean_nll(model, batch) -> float:
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    return sum(hand_sequence_nll(model, batch)) / n_tokens


def tokens(batch) -> list[int]:
    return [int((row[1:] != -100).sum()) for row in batch["labels"]]


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def close(terms, name, expected):
    assert abs(terms[name].item() - expected) < 1e-5, (name, terms[name].item(), expected)


def test_gradient_ascent_and_difference(setup):
    model, _, forget, retain, reference = setup
    close(gradient_ascent.loss(model, forget, retain, reference, None), "forget", -hand_mean_nll(model, forget.answer))
    terms = gradient_difference.loss(model, forget, retain, reference, None)
    close(terms, "forget", -hand_mean_nll(model, forget.answer))
    close(terms, "retain", hand_mean_nll(model, retain))


def test_kl_is_the_reference_to_model_divergence_averaged_over_every_position(setup):
    model, frozen, forget, retain, reference = setup
    inputs = {"input_ids": retain["input_ids"], "attention_mask": retain["attention_mask"]}
    p_model = F.log_softmax(model(**inputs).logits.double(), -1)
    p_ref = F.log_softmax(frozen(**inputs).logits.double(), -1)
    per_position = (p_ref.exp() * (p_ref - p_model)).sum(-1)  # sum_v p_ref (log p_ref - log p_theta)
    close(kl.loss(model, forget, retain, reference, None), "retain", per_position.mean().item())


def test_dpo_prefers_the_refusal_relative_to_the_reference(setup):
    model, frozen, forget, retain, reference = setup
    hp = dpo.DPOHParams(beta=0.1)
    a_model, a_ref = hand_sequence_nll(model, forget.answer), hand_sequence_nll(frozen, forget.answer)
    r_model, r_ref = hand_sequence_nll(model, forget.refusal), hand_sequence_nll(frozen, forget.refusal)
    expected = sum(-(2 / 0.1) * logsig(0.1 * ((am - ar) - (rm - rr)))
                   for am, ar, rm, rr in zip(a_model, a_ref, r_model, r_ref)) / 2
    terms = dpo.loss(model, forget, retain, reference, hp)
    close(terms, "forget", expected)
    assert "retain" not in terms  # the harness's DPO has no retain term


def test_npo_and_simnpo(setup):
    model, frozen, forget, retain, reference = setup
    nll, nll_ref = hand_sequence_nll(model, forget.answer), hand_sequence_nll(frozen, forget.answer)
    expected = sum(-(2 / 0.1) * logsig(0.1 * (m - r)) for m, r in zip(nll, nll_ref)) / 2
    terms = npo.loss(model, forget, retain, reference, npo.NPOHParams(beta=0.1))
    close(terms, "forget", expected)
    close(terms, "retain", hand_mean_nll(model, retain))
    hp = simnpo.SimNPOHParams(beta=4.5, delta=0.5)
    expected = sum(-(2 / 4.5) * logsig(4.5 * (m / n - 0.5)) for m, n in zip(nll, tokens(forget.answer))) / 2
    close(simnpo.loss(model, forget, retain, reference, hp), "forget", expected)


def test_npo_at_its_starting_point_is_two_over_beta_log_two(setup):
    model, _, forget, retain, _ = setup

    @contextmanager
    def itself():
        with torch.no_grad():
            yield model

    for beta in (0.1, 0.5):
        terms = npo.loss(model, forget, None, itself, npo.NPOHParams(beta=beta))
        close(terms, "forget", 2 / beta * math.log(2))


def test_idk_learns_the_refusal(setup):
    model, _, forget, retain, reference = setup
    terms = idk.loss(model, forget, retain, reference, None)
    close(terms, "forget", hand_mean_nll(model, forget.refusal))
    close(terms, "retain", hand_mean_nll(model, retain))


def test_rmu_steers_forget_activations_and_keeps_retain_ones(setup):
    model, frozen, forget, retain, reference = setup
    hp = rmu.RMUHParams(steer_layer=1, steering_coeff=3.0, seed=4)
    seen = {}

    def grab(name, store):
        return lambda module, args, output: store.__setitem__(name, output[0] if isinstance(output, tuple) else output)

    def hidden(m, batch):
        handle = m.model.layers[1].register_forward_hook(grab("h", seen))
        m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        handle.remove()
        return seen["h"].double()

    u = torch.rand(64, generator=torch.Generator().manual_seed(4)).double()
    c = 3.0 * u / u.norm()

    def mse(h, target, labels):
        rows = [(h[b, t] - target[b, t]).pow(2).mean() for b in range(h.shape[0]) for t in range(h.shape[1])
                if labels[b, t] != -100]
        return sum(rows) / len(rows)

    h_forget = hidden(model, forget.answer)
    terms = rmu.loss(model, forget, retain, reference, hp, path="model.layers.1")
    close(terms, "forget", mse(h_forget, c.expand_as(h_forget), forget.answer["labels"]).item())
    close(terms, "retain", mse(hidden(model, retain), hidden(frozen, retain), retain["labels"]).item())
