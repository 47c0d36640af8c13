"""Per-item metrics against hand-computed values."""

import math

import pytest

from e2u.evaluation import metrics


def test_rouge_l_recall_counts_the_longest_common_subsequence_over_reference_length():
    # reference "the capital is paris" (4 tokens); LCS with the prediction is "the capital paris" (3).
    assert metrics.rouge_l_recall(["the capital of france paris"], ["the capital is paris"]) == [pytest.approx(0.75)]


def test_rouge_l_recall_is_order_sensitive_unlike_unigram_recall():
    # every reference word occurs in the prediction (ROUGE-1 recall 1), but the longest common subsequence of
    # "paris is the capital" and "the capital is paris" is "the capital" (2 of 4 words): ROUGE-L recall 0.5
    assert metrics.rouge_l_recall(["paris is the capital"], ["the capital is paris"]) == [pytest.approx(0.5)]
    # recall divides by the reference length, not the prediction's: LCS "paris" is 1 of 1 reference words
    assert metrics.rouge_l_recall(["it is in paris of course"], ["Paris"]) == [pytest.approx(1.0)]
    assert metrics.rouge_l_recall(["berlin"], ["paris"]) == [0.0]


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


# --- truth ratio and its three aggregators ------------------------------------------------------------------

def test_truth_ratio_is_exp_of_mean_perturbed_nll_minus_paraphrased_nll():
    # mean perturbed NLL = (2 + 3 + 4) / 3 = 3; R = exp(3 - 1) = e^2 = 7.389
    assert metrics.truth_ratio(1.0, [2.0, 3.0, 4.0]) == pytest.approx(math.exp(2.0))


def test_truth_ratio_overflows_to_infinity_instead_of_raising():
    assert metrics.truth_ratio(0.0, [1000.0]) == math.inf


RATIOS = [2.0, 0.5, 1.0, 4.0]


def test_tofu_forget_truth_ratio_is_mean_of_min_r_and_inverse():
    # min(R, 1/R) = [0.5, 0.5, 1, 0.25] -> mean 2.25 / 4 = 0.5625
    assert metrics.tofu_forget_truth_ratio(RATIOS) == pytest.approx(0.5625)


def test_closer_look_forget_truth_ratio_is_one_minus_the_tofu_score():
    # 1 - 0.5625 = 0.4375
    assert metrics.closer_look_forget_truth_ratio(RATIOS) == pytest.approx(0.4375)


def test_retain_truth_ratio_is_mean_of_max_zero_one_minus_inverse():
    # max(0, 1 - 1/R) = [0.5, 0, 0, 0.75] -> mean 1.25 / 4 = 0.3125
    assert metrics.retain_truth_ratio(RATIOS) == pytest.approx(0.3125)


def test_retain_truth_ratio_equals_tofu_true_better_on_the_inverted_ratio():
    # TOFU's TR is 1/R and its `true_better` is mean(max(0, 1 - TR)).
    tofu_tr = [1 / r for r in RATIOS]
    assert metrics.retain_truth_ratio(RATIOS) == pytest.approx(sum(max(0, 1 - t) for t in tofu_tr) / 4)


def test_truth_ratio_aggregators_handle_underflow_and_overflow():
    # R = 0 (underflow) and R = inf: min(R, 1/R) = 0 for both; max(0, 1 - 1/R) = 0 and 1
    assert metrics.tofu_forget_truth_ratio([0.0, math.inf]) == 0.0
    assert metrics.retain_truth_ratio([0.0, math.inf]) == pytest.approx(0.5)


# --- probability against options, token entropy ---------------------------------------------------------------

def test_probability_with_options_normalises_over_the_perturbed_answers():
    # p = 0.4, perturbed p_j = 0.2, 0.1, 0.1 -> 0.4 / (0.4 + 0.4) = 0.5
    nll = lambda p: -math.log(p)  # noqa: E731
    assert metrics.probability_with_options(nll(0.4), [nll(0.2), nll(0.1), nll(0.1)]) == pytest.approx(0.5)


def test_probability_with_options_does_not_overflow_on_extreme_nlls():
    # exp(-2000) underflows: the true answer takes (almost) all or none of the mass
    assert metrics.probability_with_options(0.0, [2000.0]) == pytest.approx(1.0)
    assert metrics.probability_with_options(2000.0, [0.0]) == pytest.approx(0.0)


@pytest.mark.parametrize("tokens, expected", [
    ([1, 1, 1, 1], 0.0),  # one token type: H2 = 0
    ([1, 2, 3, 4], 1.0),  # uniform over 4: H2 = 2 = log2(4)
    ([1, 1, 2, 2], 0.5),  # H2 = 1, log2(4) = 2
    ([1, 1, 1, 2], 0.4056390622295664),  # H2 = -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.8112781, / 2
    ([7], 0.0),  # at most one token: 0 by definition
    ([], 0.0),
])
def test_token_entropy_is_unigram_entropy_over_log2_length(tokens, expected):
    assert metrics.token_entropy(tokens) == pytest.approx(expected)


# --- forget quality -------------------------------------------------------------------------------------------

def test_forget_quality_needs_both_samples():
    with pytest.raises(metrics.E2UError, match="retain model"):
        metrics.forget_quality([0.5], [])


def test_forget_quality_of_a_sample_against_itself_is_one():
    sample = [0.3, 0.9, 1.2, 0.5, 2.0, 0.7]
    assert metrics.forget_quality(sample, sample) == pytest.approx(1.0)


def test_forget_quality_of_disjoint_samples_is_the_exact_ks_p_value():
    # n = m = 5, every value of one sample below every value of the other: D = 1, and the exact two-sided
    # p-value is P(D = 1) = 2 / C(10, 5) = 2 / 252
    assert metrics.forget_quality([1, 2, 3, 4, 5], [10, 11, 12, 13, 14]) == pytest.approx(2 / 252)


def _exact_ks_p_value(a, b):
    """Two-sided KS p-value by enumeration: the share of the C(n+m, n) relabellings of the pooled (tie-free)
    sample whose statistic D is at least the observed one."""
    from itertools import combinations

    def d(x, y):
        points = sorted(x + y)
        return max(abs(sum(v <= t for v in x) / len(x) - sum(v <= t for v in y) / len(y)) for t in points)

    pooled, observed = a + b, d(a, b)
    splits = list(combinations(range(len(pooled)), len(a)))
    hits = 0
    for chosen in splits:
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += d(x, y) >= observed - 1e-12
    return hits / len(splits)


@pytest.mark.parametrize("a, b", [
    ([0.3, 0.9, 1.2, 0.5, 2.0, 0.7], [1.5, 2.5, 0.8, 3.0, 4.0]),  # D = 19/30, p = 41/231
    ([1, 3, 5, 7, 9], [2, 4, 6, 8, 10, 12]),  # interleaved: D = 1/3
    ([0.1, 0.2, 0.35, 4.0], [0.3, 0.4, 0.5, 0.6, 0.7]),  # D = 0.55
])
def test_forget_quality_is_the_exact_ks_p_value_of_overlapping_samples(a, b):
    from scipy.stats import ks_2samp

    expected = _exact_ks_p_value(a, b)
    assert metrics.forget_quality(a, b) == pytest.approx(expected, rel=1e-9)
    assert metrics.forget_quality(a, b) == pytest.approx(ks_2samp(a, b, method="exact").pvalue, rel=1e-9)
    assert 0.0 < expected < 1.0  # overlapping but distinguishable samples: neither extreme


def test_forget_quality_does_not_depend_on_the_truth_ratio_orientation():
    a, b = [0.3, 0.9, 1.2, 0.5, 2.0, 0.7], [1.5, 2.5, 0.8, 3.0, 4.0]
    expected = _exact_ks_p_value(a, b)
    assert metrics.forget_quality(a, b) == pytest.approx(expected)
    assert metrics.forget_quality([1 / x for x in a], [1 / x for x in b]) == pytest.approx(expected)


# --- model utility --------------------------------------------------------------------------------------------

def test_harmonic_mean_by_hand():
    # 3 / (1/1 + 1/0.5 + 1/0.25) = 3 / 7
    assert metrics.harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / 7)


def test_harmonic_mean_with_a_zero_is_zero():
    assert metrics.harmonic_mean([0.9, 0.0, 0.8]) == 0.0
    assert metrics.model_utility({"a": 0.9, "b": 0.0}).value == 0.0


def test_model_utility_leaves_out_values_not_computed_and_names_them():
    # 2 / (1/0.5 + 1/0.25) = 2 / 6
    mu = metrics.model_utility({"a": 0.5, "b": None, "c": 0.25, "d": metrics.Score.not_computed("no NLI model")})
    assert mu.value == pytest.approx(1 / 3)
    assert mu.used == ("a", "c")
    assert mu.skipped == {"b": "not computed", "d": "not computed: no NLI model"}


def test_model_utility_requiring_all_values_rejects_a_missing_one():
    with pytest.raises(metrics.E2UError, match="b"):
        metrics.model_utility({"a": 0.5, "b": None}, require_all=True)


def test_model_utility_rejects_nan_naming_the_value():
    with pytest.raises(metrics.E2UError, match="retain/probability"):
        metrics.model_utility({"retain/probability": float("nan"), "retain/rouge_l_recall": 0.5})


def tofu_summary():
    return {
        "forget": {"probability": 0.0, "rouge_l_recall": 0.0, "truth_ratio": 0.0},  # must not enter MU
        "retain": {"probability": 0.5, "rouge_l_recall": 0.5, "truth_ratio": 0.5, "token_entropy": 1.0},
        "real_authors": {"probability": 1.0, "rouge_l_recall": 1.0, "truth_ratio": 1.0},
        "world_facts": {"probability": 0.25, "rouge_l_recall": 0.25, "truth_ratio": 0.25},
    }


def test_tofu_model_utility_is_the_harmonic_mean_of_nine_numbers():
    # 9 / (3 * 2 + 3 * 1 + 3 * 4) = 9 / 21 = 3 / 7; forget values and token entropy are not among the nine
    mu = metrics.model_utility_tofu(tofu_summary())
    assert mu.value == pytest.approx(3 / 7)
    assert len(mu.used) == 9 and "retain/token_entropy" not in mu.used


def test_tofu_model_utility_needs_all_nine():
    summary = tofu_summary()
    del summary["world_facts"]["truth_ratio"]
    with pytest.raises(metrics.E2UError, match="world_facts/truth_ratio"):
        metrics.model_utility_tofu(summary)


def test_closer_look_model_utility_uses_every_non_forget_metric_and_skips_those_not_computed():
    summary = {
        "forget": {m: 0.0 for m in metrics.CLOSER_LOOK_UTILITY_METRICS},
        "retain": {"rouge_l_recall": 0.5, "probability": 0.5, "truth_ratio": 0.5, "token_entropy": 1.0,
                   "cosine_similarity": 1.0, "entailment": None, "refusal_rate": 0.0},
    }
    # 5 / (2 + 2 + 2 + 1 + 1) = 5 / 8; refusal rate is not a utility metric
    mu = metrics.model_utility_closer_look(summary)
    assert mu.value == pytest.approx(5 / 8)
    assert mu.skipped == {"retain/entailment": "not computed"}


def test_closer_look_model_utility_over_three_sets_counts_eighteen_values():
    summary = {s: {m: 0.5 for m in metrics.CLOSER_LOOK_UTILITY_METRICS} for s in ("retain", "real_authors", "world_facts")}
    mu = metrics.model_utility_closer_look(summary)
    assert len(mu.used) == 18 and mu.value == pytest.approx(0.5)


# --- forget efficacy ------------------------------------------------------------------------------------------

def test_forget_efficacy_is_one_minus_the_mean_of_the_computed_forget_metrics():
    # 1 - mean(0.4, 0.2, 0.6, 0.8) = 1 - 0.5 = 0.5; entailment not computed
    fe = metrics.forget_efficacy(0.4, 0.2, 0.6, cosine_similarity=metrics.Score(0.8, [0.8]),
                                 entailment=metrics.Score.not_computed("no NLI model"))
    assert fe.value == pytest.approx(0.5)
    assert fe.used == ("rouge_l_recall", "probability", "truth_ratio", "cosine_similarity")
    assert fe.skipped == {"entailment": "not computed: no NLI model"}


def test_forget_efficacy_with_all_five_metrics():
    # 1 - (0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5 = 1 - 0.3 = 0.7
    assert metrics.forget_efficacy(0.1, 0.2, 0.3, 0.4, 0.5).value == pytest.approx(0.7)
