"""Per-item metrics against hand-computed values."""

import math

import pytest

from e2u import metrics


def test_rouge_l_recall_counts_the_longest_common_subsequence_over_reference_length():
    # reference "the capital is paris" (4 tokens); LCS with the prediction is "the capital paris" (3).
    assert metrics.rouge_l_recall(["the capital of france paris"], ["the capital is paris"]) == [pytest.approx(0.75)]


def test_rouge_l_recall_uses_the_stemmer():
    assert metrics.rouge_l_recall(["he invented telephones"], ["invent telephone"]) == [pytest.approx(1.0)]


def test_rouge_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        metrics.rouge_l_recall(["a"], ["a", "b"])


def test_normalised_probability_is_the_geometric_mean_token_probability():
    nll = -(math.log(0.5) + math.log(0.125)) / 2
    assert metrics.normalised_probability(nll) == pytest.approx(0.25)


@pytest.mark.parametrize("text", [
    "I'm sorry, but I don't have any information about that.",
    "I don't know the answer to that question.",
    "I am not sure who that is.",
    "I cannot answer that question.",
    "I have no knowledge of that.",
    "",
])
def test_refusals_are_detected(text):
    assert metrics.is_refusal(text)


@pytest.mark.parametrize("text", [
    "The capital of France is Paris.",
    "Alexander Graham Bell invented the telephone.",
    "Knowledge of the sorry state of affairs is no secret.",
])
def test_answers_are_not_refusals(text):
    assert not metrics.is_refusal(text)
