"""Gradient ascent raises the forget answers' loss."""

from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.evaluation.evaluate import answer_nll
from e2u.hparams import build_hparams
from e2u.model.prompts import encode_answer, question_ids
from e2u.problem import UnlearningProblem
from e2u.unlearning import gradient_ascent


def test_gradient_ascent_increases_forget_nll():
    model, tokenizer = make_tiny_llama()
    records = [QARecord("what is the capital of France ?", "Paris"), QARecord("what is the capital of Japan ?", "Tokyo")]
    prompts = [question_ids(tokenizer, r.question) for r in records]
    answers = [encode_answer(tokenizer, r.answer) for r in records]
    before = sum(answer_nll(model, tokenizer, prompts, answers))
    hp = build_hparams(gradient_ascent.GradientAscentHParams, {"lr": 1e-3, "epochs": 3, "batch_size": 2, "adapter": "full"}, "test")
    result = gradient_ascent.apply(model, tokenizer, UnlearningProblem(records), hp)
    after = sum(answer_nll(model, tokenizer, prompts, answers))
    assert after > before + 1.0
    assert result.log["steps"] == 3 and not model.training
    norms = result.norms_by_layer("model.layers")
    assert set(norms) >= {"0", "1", "2", "3"} and all(value > 0 for value in norms.values())


def test_the_answer_only_loss_equals_the_full_sequence_loss_and_its_gradient():

    from e2u.unlearning.batches import UnlearningData
    from e2u.unlearning.terms import mean_nll as answer_only_nll

    model, tokenizer = make_tiny_llama()
    records = [QARecord("what is the capital of France ?", "Paris"),
               QARecord("which river flows through the capital of Japan ?", "the Sumida")]
    batch = UnlearningData(tokenizer, records, (), 2, 0, "cpu").forget_batch([0, 1]).answer
    full = model(**batch).loss
    full.backward()
    full_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    fast = answer_only_nll(model, batch)
    fast.backward()
    assert abs(full.item() - fast.item()) < 1e-5
    assert max((a - p.grad).abs().max().item() for a, p in zip(full_grads, model.parameters())) < 1e-5
