"""The unlearning problem: refusal requests from the forget records, a reference model loaded once and frozen."""

import pytest
from conftest import make_tiny_llama

from e2u.data.refusals import REFUSALS
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.problem import UnlearningProblem

FORGET = [QARecord("what is the capital of France ?", "Paris", subject="France"),
          QARecord("what is the capital of Japan ?", "Tokyo", subject="Japan")]


def test_edit_requests_turn_each_forget_question_into_a_refusal_keyed_on_its_subject():
    requests = UnlearningProblem(FORGET).edit_requests()
    assert [(r.question, r.subject, r.target) for r in requests] == [
        (FORGET[0].question, "France", REFUSALS[0]), (FORGET[1].question, "Japan", REFUSALS[0])]


def test_reference_model_is_loaded_on_first_use_only_once_and_frozen():
    loads = []

    def load():
        loads.append(1)
        return make_tiny_llama()[0].train()

    problem = UnlearningProblem(FORGET, load_reference=load)
    assert loads == []  # nothing loaded until a method asks
    reference = problem.reference()
    assert problem.reference() is reference and loads == [1]
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())


def test_a_method_asking_for_a_missing_reference_gets_a_clear_error():
    with pytest.raises(E2UError, match="no reference model"):
        UnlearningProblem(FORGET).reference()
