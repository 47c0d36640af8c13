"""ROME on a tiny random Llama: the edit lands, the closed form is right, unrelated prompts barely move."""

import torch
from conftest import make_tiny_llama

from e2u.editing import rome
from e2u.editing.requests import EditRequest, key_site, subject_last_index
from e2u.evaluation.evaluate import answer_nll
from e2u.hparams import build_hparams
from e2u.model.arch import find_arch
from e2u.model.prompts import encode_answer, question_ids

BARE_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def _editable_llama():
    # initializer_range 0.1: at the default 0.02 a random model's activations are too small for a
    # single MLP output to steer the logits at all, so no editor could succeed on it.
    model, tokenizer = make_tiny_llama(initializer_range=0.1)
    # ...and a random LM head caps how peaked any next-token distribution can get (its logits are
    # bounded by its weights' norms after the final RMSNorm); scale it so p > 0.9 is reachable.
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    tokenizer.chat_template = BARE_TEMPLATE  # the prompt is the question itself, ending at the subject
    return model, tokenizer


def _next_token_logprobs(model, tokenizer, text):
    with torch.no_grad():
        return model(torch.tensor([question_ids(tokenizer, text)])).logits[0, -1].log_softmax(-1)


def test_rome_moves_target_probability_above_0_9_and_control_kl_stays_small():
    model, tokenizer = _editable_llama()
    request = EditRequest("the capital city of France", "Rome", "France", eos=False)
    control = "what is the currency of Japan"
    before = _next_token_logprobs(model, tokenizer, control)
    hp = build_hparams(rome.RomeHParams, {"layer": 1, "n_context_templates": 0, "v_num_grad_steps": 150,
                                          "clamp_norm_factor": 10, "kl_factor": 0.0, "mom2_n_tokens": 4000}, "test")
    result = rome.edit(model, tokenizer, [request], hp)
    nll = answer_nll(model, tokenizer, [question_ids(tokenizer, request.question)],
                     [encode_answer(tokenizer, request.target, with_eos=False)])[0]
    after = _next_token_logprobs(model, tokenizer, control)
    kl = torch.nn.functional.kl_div(after, before, log_target=True, reduction="sum").item()
    assert torch.exp(torch.tensor(-nll)).item() > 0.9
    assert kl < 0.05
    assert result.log["missing_subject"] == []
    assert set(result.deltas) == {"model.layers.1.mlp.down_proj"}


def test_rank_one_update_is_the_least_squares_solution_in_the_c_metric():
    torch.manual_seed(0)
    d_in, d_out = 12, 5
    basis = torch.randn(200, d_in, dtype=torch.float64)
    moment = basis.T @ basis / 200
    k_star, k = torch.randn(d_in, dtype=torch.float64), torch.randn(d_in, dtype=torch.float64)
    v, v_star = torch.randn(d_out, dtype=torch.float64), torch.randn(d_out, dtype=torch.float64)
    delta = rome.rank_one_update(k_star, k, v_star, v, torch.linalg.inv(moment))
    # The constraint holds: (W + delta) k = v* when W k = v.
    assert torch.allclose(delta @ k, v_star - v, atol=1e-10)
    # Direct solution: minimise ||delta||_C subject to delta k = r, i.e. delta = r (C^-1 k*)^T / (k*^T C^-1 k)
    # when k = k*; compare with a least-squares solve of the Lagrangian system.
    delta_same = rome.rank_one_update(k_star, k_star, v_star, v, torch.linalg.inv(moment))
    lagrange = torch.linalg.lstsq(moment, k_star.unsqueeze(1)).solution.squeeze(1)
    direct = torch.outer(v_star - v, lagrange) / (k_star @ lagrange)
    assert torch.allclose(delta_same, direct, atol=1e-4)


def test_subject_last_index_points_at_the_subjects_last_token():
    model, tokenizer = make_tiny_llama()
    text = "Question: who painted the capital city of France ?\nAnswer:"
    index = subject_last_index(tokenizer, text, "capital city")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert tokens[index] == "city"


def test_missing_subject_falls_back_to_last_prompt_token(caplog):
    from e2u.editing.requests import report_missing_subjects

    model, tokenizer = make_tiny_llama()
    request = EditRequest("what is the capital of Italy ?", "I do not know", "Portugal")
    site = key_site(tokenizer, request)
    assert not site.subject_found and site.index == len(site.ids) - 1
    with caplog.at_level("WARNING"):
        assert report_missing_subjects(tokenizer, [request]) == [0]
    assert "Portugal" in caplog.text and "last prompt token" in caplog.text


def test_empty_target_is_rejected_with_the_question_named():
    import pytest

    from e2u.errors import E2UError

    with pytest.raises(E2UError, match="target is empty"):
        EditRequest("what is the capital of Italy ?", "  ", "Italy")


def test_layer_out_of_range_names_the_valid_range():
    import pytest

    from e2u.errors import E2UError

    model, tokenizer = make_tiny_llama()
    hp = build_hparams(rome.RomeHParams, {"layer": 9, "mom2_adjustment": False}, "test")
    with pytest.raises(E2UError, match=r"0\.\.3"):
        rome.edit(model, tokenizer, [EditRequest("what is Paris ?", "I do not know", "Paris")], hp)


def test_rome_refuses_a_list_of_several_layers_instead_of_dropping_all_but_one():
    import pytest

    from e2u.errors import E2UError

    model, tokenizer = make_tiny_llama()
    hp = build_hparams(rome.RomeHParams, {"layers": [1, 2], "mom2_adjustment": False}, "test")
    with pytest.raises(E2UError, match=r"ROME edits one layer.*\[1, 2\]"):
        rome.edit(model, tokenizer, [EditRequest("what is Paris ?", "I do not know", "Paris")], hp)


def test_rome_edits_a_gpt2_conv1d_matrix_in_its_transposed_layout():
    from conftest import make_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer()
    tokenizer.chat_template = BARE_TEMPLATE
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=3, n_head=4, n_positions=512,
                        initializer_range=0.1, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    arch = find_arch(model)
    assert arch.mlp_out_path(1) == "transformer.h.1.mlp.c_proj"
    before = model.get_submodule(arch.mlp_out_path(1)).weight.detach().clone()  # Conv1D: d_in x d_out = 256 x 64
    request = EditRequest("the capital city of France", "Rome", "France", eos=False)

    def target_probability():
        nll = answer_nll(model, tokenizer, [question_ids(tokenizer, request.question)],
                         [encode_answer(tokenizer, request.target, with_eos=False)])[0]
        return torch.exp(torch.tensor(-nll)).item()

    assert target_probability() < 0.05
    hp = build_hparams(rome.RomeHParams, {"layer": 1, "n_context_templates": 0, "v_num_grad_steps": 150,
                                          "clamp_norm_factor": 10, "kl_factor": 0.0, "mom2_n_tokens": 2000}, "test")
    result = rome.edit(model, tokenizer, [request], hp)
    delta = result.deltas["transformer.h.1.mlp.c_proj"]
    assert delta.shape == (64, 256)  # written as the paper writes it: (d_out, d_in)
    after = model.get_submodule(arch.mlp_out_path(1)).weight.detach()
    torch.testing.assert_close(after - before, delta.T, rtol=1e-5, atol=1e-6)
    assert target_probability() > 0.5  # GPT-2's tied head caps how peaked it gets; from < 0.05 before
