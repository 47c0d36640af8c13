"""The fast evaluation path equals its plain definition item by item (tiny random models built here).

`evaluate_records` runs each prompt batch once (greedy decoding continued from the prefill, answers scored
after it); `evaluate_records_reference` is `generate_answers` then `answer_nll`. Greedy answers must be the
same strings and the numbers the same.
"""

import random

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.evaluation.evaluate import evaluate_records, evaluate_records_reference
from e2u.evaluation.greedy import greedy_continue
from e2u.model.kv_context import prefill

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model_and_tokenizer():
    # Larger weights than the default 0.02: answers and NLLs then differ visibly from item to item.
    return make_tiny_llama(layers=2, hidden=32, intermediate=64, initializer_range=0.5)


def _prompts(tokenizer, seed=0, n=7):
    rng = random.Random(seed)
    return [[tokenizer.bos_token_id] + [rng.randrange(4, len(tokenizer)) for _ in range(3 + 2 * k)] for k in range(n)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(1.0, abs(b))


def test_greedy_continue_from_the_prefill_reproduces_generate_token_for_token(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(prompts), max(map(len, prompts))), pad)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding, as generate_answers builds it
        ids[row, ids.shape[1] - len(p):], mask[row, ids.shape[1] - len(p):] = torch.tensor(p), 1
    free = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=pad,
                          eos_token_id=None)[:, ids.shape[1]:]
    # Make the most frequent generated token the EOS, so that rows stop at different steps and get padded.
    eos = int(torch.mode(free.flatten()).values)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=pad,
                              eos_token_id=eos)[:, ids.shape[1]:]
    found, _ = greedy_continue(model, prefill(model, prompts, pad), 12, eos, pad)
    assert torch.equal(found, expected)
    assert (expected == pad).any() and len({tuple(r) for r in expected.tolist()}) > 1


def _answers(tokenizer, prompts, seed=1):
    """Per prompt: answers sharing prefixes two levels deep, one-token and empty answers, a repeated answer."""
    rng = random.Random(seed)

    def word():
        return rng.randrange(4, len(tokenizer))

    out = []
    for _ in prompts:
        stem = [word() for _ in range(5)]
        branch = stem + [word() for _ in range(5)]
        answers = [stem + [word() for _ in range(rng.randint(1, 4))] for _ in range(2)]
        answers += [branch + [word() for _ in range(rng.randint(1, 3))] for _ in range(3)]
        answers += [[word()], [], [word() for _ in range(rng.randint(2, 9))], list(answers[0])]
        out.append(answers)
    return out


def _records():
    return [
        QARecord("what is the capital of France ?", "the capital is Paris", subject="France",
                 paraphrased_answer="the capital city of France is Paris",
                 perturbed_answer=("the capital city of France is Rome", "the capital city of France is Berlin",
                                   "the capital city is Tokyo", "Madrid")),
        QARecord("what is the currency of Japan ?", "yen", subject="Japan", perturbed_answer=("euro", "the euro")),
        QARecord("who painted the house ?", "I do not know", subject="house"),
        QARecord("which river is in Germany ?", "the Rhine", subject="Germany", original_answer="the river Rhine",
                 perturbed_answer=("the river Tokyo", "the river Rome")),
        QARecord("what is the capital of France ?", "Paris", subject="France"),  # a repeated prompt
    ]


@pytest.mark.parametrize("batch_size", [2, 32])
def test_one_prompt_pass_gives_the_reference_values_exactly(model_and_tokenizer, batch_size):
    # The answers run in answer_nll's own passes after the prefill, which equals answer_nll's prompt pass.
    model, tokenizer = model_and_tokenizer
    records = _records()
    found = evaluate_records(model, tokenizer, records, max_new_tokens=8, batch_size=batch_size)
    assert found == evaluate_records_reference(model, tokenizer, records, max_new_tokens=8, batch_size=batch_size)


def test_a_generation_config_with_a_logits_processor_takes_the_reference_path(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    records = _records()
    model.generation_config.repetition_penalty = 1.5
    try:
        found = evaluate_records(model, tokenizer, records, max_new_tokens=8, batch_size=4)
        expected = evaluate_records_reference(model, tokenizer, records, max_new_tokens=8, batch_size=4)
    finally:
        model.generation_config.repetition_penalty = 1.0
    assert found == expected


def test_embed_runs_each_distinct_text_once_and_equals_embed_plain(tmp_path):
    from test_similarity import write_bert

    from e2u.evaluation import similarity

    write_bert(tmp_path, classifier=False)
    embedder = similarity.SentenceEmbedder(tmp_path, device="cpu", batch_size=2)
    texts = ["the cat sat on the mat", "paris", "the capital of france is paris", "paris", "a cat"]
    assert torch.allclose(embedder.embed(texts), embedder.embed_plain(texts), atol=1e-6)
    found = embedder.cosine(texts, texts[::-1])
    assert all(_close(a, b) for a, b in zip(found, embedder.cosine_plain(texts, texts[::-1])))
    assert embedder.embed([]).shape == (0, 32)
