"""answer_nll runs each distinct prompt once and reuses its KV cache: same values as one pass per pair."""

import random

import pytest
import torch
from conftest import make_tiny_llama

from e2u.evaluation.answer_nll import _answer_nll_unshared, answer_nll


@pytest.fixture(scope="module")
def model_and_tokenizer():
    # Larger weights than the default 0.02 so that wrong positions or masks move the NLLs visibly.
    return make_tiny_llama(layers=2, hidden=32, intermediate=64, initializer_range=0.5)


def _ids(rng, vocab, length):
    return [rng.randrange(4, vocab) for _ in range(length)]  # skip the special tokens


def _pairs(tokenizer, seed=0, n_prompts=5, answers_per_prompt=7):
    """Prompts of different lengths (each with a BOS), answers of 1..12 tokens, shuffled together."""
    rng, vocab = random.Random(seed), len(tokenizer)
    pairs = []
    for k in range(n_prompts):
        prompt = [tokenizer.bos_token_id] + _ids(rng, vocab, 3 + 7 * k)
        pairs += [(prompt, _ids(rng, vocab, rng.randint(1, 12))) for _ in range(answers_per_prompt)]
    rng.shuffle(pairs)
    return [p for p, _ in pairs], [a for _, a in pairs]


def _check(model, tokenizer, prompts, answers, batch_size):
    expected = _answer_nll_unshared(model, tokenizer, prompts, answers, batch_size=1)
    found = answer_nll(model, tokenizer, prompts, answers, batch_size=batch_size)
    assert len(found) == len(expected)
    assert all(abs(a - b) < 1e-4 for a, b in zip(found, expected))  # also fails on NaN
    return found


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_shared_prompts_match_one_pass_per_pair(model_and_tokenizer, batch_size):
    model, tokenizer = model_and_tokenizer
    prompts, answers = _pairs(tokenizer)
    found = _check(model, tokenizer, prompts, answers, batch_size)
    # The values differ from item to item, so a result in the wrong slot would not pass the check.
    assert len({round(v, 4) for v in found}) > len(found) // 2


def test_consecutive_groups_as_evaluate_records_builds_them(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts, answers = _pairs(tokenizer, seed=1, n_prompts=3)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # each prompt's answers in a row
    _check(model, tokenizer, [prompts[i] for i in order], [answers[i] for i in order], batch_size=4)


def test_single_pair_one_token_and_empty_answers(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rng = random.Random(2)
    prompt = [tokenizer.bos_token_id] + _ids(rng, len(tokenizer), 9)
    _check(model, tokenizer, [prompt], [_ids(rng, len(tokenizer), 5)], batch_size=16)
    _check(model, tokenizer, [prompt], [_ids(rng, len(tokenizer), 1)], batch_size=16)
    assert _check(model, tokenizer, [prompt, prompt], [[], _ids(rng, len(tokenizer), 3)], batch_size=16)[0] == 0.0
    assert answer_nll(model, tokenizer, [], []) == []


def test_left_padded_prompts_need_their_own_positions(model_and_tokenizer, monkeypatch):
    """The check is sensitive: with position ids that ignore the left padding the values move."""
    model, tokenizer = model_and_tokenizer
    prompts, answers = _pairs(tokenizer, seed=3, n_prompts=2, answers_per_prompt=2)
    expected = _answer_nll_unshared(model, tokenizer, prompts, answers)
    body = model.base_model
    forward = body.forward

    def padding_blind(*args, **kwargs):
        if kwargs.get("past_key_values") is None and "position_ids" in kwargs:
            kwargs["position_ids"] = torch.arange(kwargs["input_ids"].shape[1]).expand_as(kwargs["input_ids"])
        return forward(*args, **kwargs)

    monkeypatch.setattr(body, "forward", padding_blind)
    wrong = answer_nll(model, tokenizer, prompts, answers, batch_size=16)
    assert max(abs(a - b) for a, b in zip(wrong, expected)) > 1e-3


def test_nll_is_the_mean_token_nll_of_the_answer_by_hand(model_and_tokenizer):
    """Independent of both batching routes: one unpadded forward pass per pair, log-softmax read by hand."""
    model, tokenizer = model_and_tokenizer
    prompts, answers = _pairs(tokenizer, seed=4, n_prompts=2, answers_per_prompt=3)
    expected = []
    for prompt, answer in zip(prompts, answers):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + answer])).logits[0].double(), dim=-1)
        # the position before each answer token predicts it
        expected.append(-sum(logp[len(prompt) - 1 + j, token].item() for j, token in enumerate(answer)) / len(answer))
    for found in (answer_nll(model, tokenizer, prompts, answers, batch_size=4),
                  _answer_nll_unshared(model, tokenizer, prompts, answers, batch_size=4)):
        assert found == pytest.approx(expected, abs=1e-4)
    assert len({round(v, 3) for v in expected}) == len(expected)  # distinct values: no slot mix-up passes
