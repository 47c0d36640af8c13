"""The metric suite wired into evaluation: per-item values on a tiny model and the split summaries."""

import math
import re
from collections import Counter

import pytest

from e2u.data.schema import QARecord
from e2u.evaluation.aggregates import aggregates
from e2u.evaluation.evaluate import answer_nll, evaluate_dataset, summarise
from e2u.model.prompts import encode_answer, question_ids


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
    assert "cosine_similarity" not in item
    # P(answer) is exp(-mean token NLL) of the ground truth
    assert item["probability"] == pytest.approx(p[0], rel=1e-4)
    assert second["probability"] == pytest.approx(math.exp(-nlls[0]), rel=1e-4)
    for split in ("forget", "retain"):
        for got, record in zip(results[split], records):
            assert got["reference"] == record.answer
            # one-word references: ROUGE-L recall is 1 when the word is in the answer (case folded), else 0
            words = re.findall(r"[a-z0-9]+", got["generated"].lower())
            assert got["rouge_l_recall"] == float(record.answer.lower() in words)
            assert got["token_entropy"] == pytest.approx(_entropy(tokenizer, got["generated"]))
    # the paraphrased split asks the paraphrased question and keeps the record's answer
    assert [i["question"] for i in results["forget_paraphrased"]] == [records[0].paraphrased_question]
    assert results["forget_paraphrased"][0]["reference"] == "Paris"


def _entropy(tokenizer, text):
    """H2 of the text's token unigram distribution over log2(#tokens), 0 for at most one token (by hand)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= 1:
        return 0.0
    h = -sum(c / len(ids) * math.log2(c / len(ids)) for c in Counter(ids).values())
    return h / math.log2(len(ids))


def test_token_entropy_of_a_known_generation(tiny_llama):
    # "Paris Paris Rome ." -> tokens [Paris, Paris, Rome, .]: p = (1/2, 1/4, 1/4), H2 = 1.5 bits, / log2(4) = 0.75
    _, tokenizer = tiny_llama
    from e2u.evaluation import metrics

    ids = tokenizer("Paris Paris Rome .", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and len(set(ids)) == 3
    assert metrics.token_entropy(ids) == pytest.approx(0.75)


def test_summary_means_are_the_item_means():
    items = [{"rouge_l_recall": 1.0, "probability": 0.2, "refusal": True, "token_entropy": 0.5},
             {"rouge_l_recall": 0.0, "probability": 0.6, "refusal": False, "token_entropy": 1.0,
              "cosine_similarity": 0.8},
             {"rouge_l_recall": 0.5, "probability": 0.4, "refusal": False, "token_entropy": 0.0,
              "cosine_similarity": 0.4}]
    entry = summarise({"retain": items})["retain"]
    assert entry["n"] == 3
    assert entry["rouge_l_recall"] == pytest.approx(0.5)
    assert entry["probability"] == pytest.approx(0.4)
    assert entry["refusal_rate"] == pytest.approx(1 / 3)
    assert entry["token_entropy"] == pytest.approx(0.5)
    assert entry["cosine_similarity"] == pytest.approx(0.6)  # over the items that have it
    assert entry["probability_options"] is None and entry["truth_ratio"] is None  # no perturbed answers


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


def test_only_the_named_splits_are_asked_in_paraphrase(tiny_llama):
    model, tokenizer = tiny_llama
    records = _records()
    results = evaluate_dataset(model, tokenizer, {"forget": records, "retain": records}, max_new_tokens=4,
                               embedder=None, paraphrased=["forget"])
    assert list(results) == ["forget", "forget_paraphrased", "retain"]
    everything = evaluate_dataset(model, tokenizer, {"forget": records, "retain": records}, max_new_tokens=4,
                                  embedder=None)
    assert results["retain"] == everything["retain"]


def test_a_paraphrased_parameter_that_is_not_a_list_of_split_names_is_named():
    from e2u.cell.params import CellParams
    from e2u.errors import E2UError

    with pytest.raises(E2UError, match=r"parameter paraphrased: expected a list of split names such as \['forget'\]"):
        CellParams(data_source="mini", paraphrased="forget")
