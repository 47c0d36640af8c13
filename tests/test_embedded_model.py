"""End-to-end on the embedded SmolLM2-135M-Instruct (converted once into $E2U_HOME)."""

import os
from pathlib import Path

import pytest

from e2u.evaluate import generate_answers
from e2u.prompts import question_ids


@pytest.fixture
def shared_home(monkeypatch):
    # The conversion takes ~40 s: share the user's cache rather than converting per test.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))


@pytest.mark.slow
def test_embedded_model_loads_and_answers_a_question(shared_home):
    from e2u.arch import find_arch
    from e2u.models import load_model

    model, tokenizer = load_model("smollm2-135m-instruct")
    arch = find_arch(model)
    assert (arch.n_layers, arch.hidden_size, arch.key_size) == (30, 576, 1536)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert tokenizer.eos_token == "<|im_end|>"
    answer = generate_answers(model, tokenizer, [question_ids(tokenizer, "What is the capital of France?")], 16)[0]
    assert "Paris" in answer
