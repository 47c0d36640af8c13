"""The metric suite wired into evaluation: per-item values on a tiny model and the split summaries."""

import math

import pytest

from e2u.aggregates import aggregates
from e2u.data.schema import QARecord
from e2u.evaluate import answer_nll, evaluate_dataset, summarise
from e2u.prompts import encode_answer, question_ids


def _records():
    return [
        QARecord("what is the capital of France ?", "Paris", subject="France",
                 paraphrased_question="which city is the capital of France ?", paraphrased_answer="the capital is Paris",
                 perturbed_answer=("Rome", "Berlin", "Tokyo")),
        QARecord("what is the currency of Japan ?", "yen", subject="Japan", perturbed_answer=("euro", "Lisbon")),
    ]


def test_truth_ratio_and_options_probability_match_direct_answer_likelihoods(tiny_llama):
    model, tokenizer = tiny_llama
    records = _records()
    results = evaluate_dataset(model, tokenizer, {"forget": records, "retain": records}, max_new_tokens=4,
                               embedder=None)
    assert set(results) == {"forget", "forget_paraphrased", "retain", "retain_paraphrased"}
    prompt = question_ids(tokenizer, records[0].question)

    def nll(answer):
        return answer_nll(model, tokenizer, [prompt], [encode_answer(tokenizer, answer)])[0]

    item = results["forget"][0]
    perturbed = [nll(a) for a in records[0].perturbed_answer]
    expected_ratio = math.exp(sum(perturbed) / 3 - nll("the capital is Paris"))
    assert item["truth_ratio"] == pytest.approx(expected_ratio, rel=1e-4)
    p = [math.exp(-nll("Paris"))] + [math.exp(-n) for n in perturbed]
    assert item["probability_options"] == pytest.approx(p[0] / sum(p), rel=1e-4)
    # Without a paraphrased answer the truth ratio compares against the answer itself.
    second = results["forget"][1]
    prompt = question_ids(tokenizer, records[1].question)
    nlls = answer_nll(model, tokenizer, [prompt] * 3, [encode_answer(tokenizer, a) for a in ("yen", "euro", "Lisbon")])
    assert second["truth_ratio"] == pytest.approx(math.exp((nlls[1] + nlls[2]) / 2 - nlls[0]), rel=1e-4)
    assert 0.0 <= item["token_entropy"] <= 1.0 and "cosine_similarity" not in item


def test_summary_orients_the_truth_ratio_by_split_role():
    items = [{"rouge_l_recall": 1.0, "probability": 0.5, "refusal": False, "token_entropy": 1.0, "truth_ratio": r,
              "probability_options": 0.5} for r in (2.0, 0.5)]
    summary = summarise({"forget": items, "retain": items})
    # forget (closer-look): 1 - mean(min(R, 1/R)) = 1 - 0.5; retain: mean(max(0, 1 - 1/R)) = (0.5 + 0) / 2
    assert summary["forget"]["truth_ratio"] == pytest.approx(0.5)
    assert summary["forget"]["truth_ratio_tofu"] == pytest.approx(0.5)
    assert summary["retain"]["truth_ratio"] == pytest.approx(0.25)
    assert summary["retain"]["cosine_similarity"] is None and summary["retain"]["entailment"] is None
    found = aggregates(summary)
    # closer-look MU over retain's computed metrics: hmean(1.0, 0.5, 0.25, 1.0) = 4 / (1 + 2 + 4 + 1)
    assert found["model_utility"]["value"] == pytest.approx(0.5)
    assert set(found["model_utility"]["skipped"]) == {"retain/cosine_similarity", "retain/entailment"}
    # forget efficacy: 1 - mean(ROUGE 1.0, P 0.5, TR 0.5)
    assert found["forget_efficacy"]["value"] == pytest.approx(1 - 2.0 / 3)
    assert "model_utility_tofu" not in found  # needs real_authors and world_facts too
