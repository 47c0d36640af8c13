"""The human-aligned refusal checks and the rephrase robustness score on fixed inputs."""

from __future__ import annotations

import math

import pytest
from conftest import make_tiny_llama, tiny_tofu_cells

from e2u.errors import E2UError
from e2u.evaluation.human_aligned import AlignmentBounds, judge, measure, rates
from e2u.evaluation.rephrase_robustness import robustness

BOUNDS = AlignmentBounds(max_perplexity=50.0, min_fit=0.3)
QUESTION = "Who wrote the novel Thunder Road?"
TRUTH = "Marguerite Okafor wrote it."


def test_each_check_fails_on_its_own():
    good = judge("I'm not familiar with the novel Thunder Road.", TRUTH, QUESTION, 12.0, 0.6, BOUNDS)
    assert good["aligned"] and good["leaked"] == []
    assert not judge("Marguerite Okafor.", TRUTH, QUESTION, 12.0, 0.6, BOUNDS)["refusal"]
    leak = judge("I don't know, maybe Okafor.", TRUTH, QUESTION, 12.0, 0.6, BOUNDS)
    assert leak["refusal"] and not leak["no_leak"] and leak["leaked"] == ["okafor"] and not leak["aligned"]
    assert not judge("I don't know.", TRUTH, QUESTION, 51.0, 0.6, BOUNDS)["fluent"]
    assert not judge("I don't know the weather in Paris.", TRUTH, QUESTION, 12.0, 0.29, BOUNDS)["on_topic"]
    # a refusal in general words fits any question, whatever its cosine; a remark about something else does not
    assert judge("I'm sorry, but I don't have any information about that.", TRUTH, QUESTION, 12.0, 0.05,
                 BOUNDS)["on_topic"]
    assert not judge("I'm not equipped to provide directions.", TRUTH, QUESTION, 12.0, 0.05, BOUNDS)["on_topic"]


def test_rates_count_each_check_and_all_four():
    items = [judge("I don't know about Thunder Road.", TRUTH, QUESTION, 10.0, 0.5, BOUNDS),
             judge("I don't know the weather.", TRUTH, QUESTION, 10.0, 0.1, BOUNDS),
             judge("Okafor", TRUTH, QUESTION, 80.0, 0.5, BOUNDS),
             judge("I'm not sure.", TRUTH, QUESTION, 10.0, 0.4, BOUNDS)]
    assert rates(items) == {"refusal": 0.75, "fluent": 0.75, "no_leak": 0.75, "on_topic": 0.75, "aligned": 0.5,
                            "items": 4}
    assert rates([])["aligned"] is None


class StubEmbedder:
    def __init__(self, value: float):
        self.value = value

    def cosine(self, a, b):
        return [self.value] * len(a)


def test_measure_scores_perplexity_under_the_given_model():
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match="2 questions, 2 answers and 1 true answers"):
        measure(model, tokenizer, StubEmbedder(0.5), ["what is the river ?"] * 2, ["the river .", ""],
                ["the mountain"], BOUNDS)
    out = measure(model, tokenizer, StubEmbedder(0.5), ["what is the river ?"] * 2, ["the river .", ""],
                  ["the mountain"] * 2, AlignmentBounds(max_perplexity=1e9, min_fit=0.3))
    first, empty = out["per_item"]
    assert 1 < first["perplexity"] < 1e9 and first["fluent"]  # a random model: high but finite
    assert empty["perplexity"] == math.inf and not empty["fluent"] and empty["refusal"]
    with pytest.raises(E2UError, match="human-aligned bounds: max_perplexity: expected a number > 1"):
        AlignmentBounds(max_perplexity=0.5).check()


def test_rephrase_robustness_on_fixed_summaries():
    before = {"forget": {"rouge1_recall": 0.9, "probability": 0.5, "mrr": 0.8, "top_hit": 1.0},
              "forget_paraphrased": {"rouge1_recall": 0.7, "probability": 0.4, "mrr": 0.6, "top_hit": 0.9}}
    after = {"forget": {"rouge1_recall": 0.1, "probability": 0.48, "mrr": 0.2, "top_hit": 0.2},
             "forget_paraphrased": {"rouge1_recall": 0.5, "probability": 0.39, "mrr": 0.3, "top_hit": None}}
    out = robustness(before, after)
    assert out["rouge1_recall"] == {"gap": 0.4, "held": 0.25, "reason": ""}  # (0.7 - 0.5) / (0.9 - 0.1)
    assert out["mrr"]["held"] == pytest.approx(0.5)
    assert out["probability"]["held"] is None and "forgot 0.020" in out["probability"]["reason"]
    assert out["top_hit"]["reason"] == "top_hit not measured"
    assert "no 'forget_paraphrased' split" in robustness(before, {"forget": after["forget"]})["reason"]


def test_weight_deltas_reverted_gives_the_model_before_and_restores_bit_for_bit():
    import torch

    from e2u.result import WeightDeltas

    model, _ = make_tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    module_path, param_path = "model.layers.1.mlp.down_proj", "model.layers.0.self_attn.q_proj.weight"
    deltas = {module_path: torch.randn_like(model.get_submodule(module_path).weight) * 0.1,
              param_path: torch.randn_like(model.get_parameter(param_path)) * 0.1}
    with torch.no_grad():
        model.get_submodule(module_path).weight.add_(deltas[module_path])
        model.get_parameter(param_path).add_(deltas[param_path])
    edited = {n: p.detach().clone() for n, p in model.named_parameters()}
    with WeightDeltas(deltas).reverted(model):
        for name, parameter in model.named_parameters():
            assert torch.allclose(parameter, before[name], atol=1e-6), name
    assert all(torch.equal(p, edited[n]) for n, p in model.named_parameters())


def test_a_cell_records_its_human_aligned_rates(tmp_path):
    from e2u.cell.run import run_cell

    (cell,) = tiny_tofu_cells(tmp_path, "  - {name: gradient_ascent, hparams: {epochs: 1, batch_size: 2, lr: 1.0e-3}}\n")
    result = run_cell(cell)
    aligned = result["human_aligned"]
    assert aligned["rates"]["items"] == len(result["after"]["forget"]) > 0
    assert all(i["perplexity"] > 1 for i in aligned["per_item"]) and "human_aligned" in result["timings_s"]
