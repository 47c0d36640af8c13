"""End-to-end on the embedded SmolLM2-135M-Instruct (converted once into $E2U_HOME)."""

import os
from pathlib import Path

import pytest

from e2u.evaluation.evaluate import generate_answers
from e2u.model.prompts import question_ids


@pytest.fixture
def shared_home(monkeypatch):
    # The conversion takes ~40 s: share the user's cache rather than converting per test.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))


@pytest.mark.slow
def test_embedded_model_loads_and_answers_a_question(shared_home):
    from e2u.model.arch import find_arch
    from e2u.model.load import load_model

    model, tokenizer = load_model("smollm2-135m-instruct")
    arch = find_arch(model)
    assert (arch.n_layers, arch.hidden_size, arch.key_size) == (30, 576, 1536)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert tokenizer.eos_token == "<|im_end|>"
    # plain text without a BOS, whichever transformers converted the GGUF (4.x's conversion prepended <|im_start|>)
    assert tokenizer("The capital")["input_ids"] == tokenizer("The capital", add_special_tokens=False)["input_ids"]
    answer = generate_answers(model, tokenizer, [question_ids(tokenizer, "What is the capital of France?")], 16)[0]
    assert "Paris" in answer


@pytest.mark.slow
def test_grace_on_the_embedded_model_refuses_when_generating_and_leaves_other_answers(shared_home, tmp_path):
    """GRACE with the embedded model's defaults, two sequential edits: the greedy answers to the edited questions
    start with the refusal, the answers to kept and unseen questions are unchanged, and the adaptor round-trips."""
    from e2u.data.refusals import refusal_for
    from e2u.data.schema import QARecord
    from e2u.methods import load_adaptor, method_hparams, run_method
    from e2u.model.load import load_model
    from e2u.problem import UnlearningProblem

    model, tokenizer = load_model("smollm2-135m-instruct")
    forget = [QARecord("Who wrote the play Romeo and Juliet?", "William Shakespeare", "Romeo and Juliet"),
              QARecord("What is the capital of Japan?", "Tokyo", "Japan")]
    kept = [QARecord("What is the capital of Italy?", "Rome", "Italy"),
            QARecord("Who painted the Mona Lisa?", "Leonardo da Vinci", "Mona Lisa"),
            QARecord("What is the currency of the United Kingdom?", "Pound sterling", "United Kingdom")]
    unseen = ["What is the capital of Egypt?", "Who invented the telephone?"]

    def answers(questions):
        return generate_answers(model, tokenizer, [question_ids(tokenizer, q) for q in questions], 24)

    before = answers([r.question for r in kept] + unseen)
    hp = method_hparams("grace", model, "smollm2-135m-instruct", {})
    adaptor = run_method("grace", model, tokenizer, UnlearningProblem(forget, kept), hp)
    refusal = refusal_for("", "fixed", 0)
    assert all(a.startswith(refusal) for a in answers([r.question for r in forget]))
    assert answers([r.question for r in kept] + unseen) == before
    adaptor.save(tmp_path / "grace.safetensors")
    adaptor.remove()
    assert answers([r.question for r in kept] + unseen) == before
    load_adaptor(model, tmp_path / "grace.safetensors")
    assert all(a.startswith(refusal) for a in answers([r.question for r in forget]))
