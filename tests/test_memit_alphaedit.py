"""MEMIT and AlphaEdit on one core: closed forms, the null-space guarantee, and batch edits that land."""

import pytest
import torch

from e2u.editing import alphaedit, memit
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.evaluate import answer_nll
from e2u.hparams import build_hparams
from e2u.prompts import encode_answer, question_ids

from test_rome import _editable_llama

SUBJECTS = ["France", "Italy", "Germany", "Japan", "Spain", "Portugal", "Austria", "Paris", "Tokyo", "Madrid"]
TARGETS = ["Rome", "Berlin", "Tokyo", "Lisbon", "Vienna", "Madrid", "Paris", "dog", "cat", "tree"]


def test_memit_update_equals_the_regularised_least_squares_solution():
    torch.manual_seed(0)
    d, d_k, n, lam = 6, 10, 4, 3.0
    keys, residual = torch.randn(d_k, n, dtype=torch.float64), torch.randn(d, n, dtype=torch.float64)
    basis = torch.randn(d_k, 50, dtype=torch.float64)
    moment = basis @ basis.T / 50
    delta = memit.memit_update(keys, residual, moment, lam)
    # min ||dW K - R||^2 + lam ||dW L||^2 with C = L L^T, as one stacked least-squares problem.
    chol = torch.linalg.cholesky(moment)
    design = torch.cat([keys, lam**0.5 * chol], dim=1)
    target = torch.cat([residual, torch.zeros(d, d_k, dtype=torch.float64)], dim=1)
    direct = torch.linalg.lstsq(design.T, target.T).solution.T
    assert torch.allclose(delta, direct, atol=1e-4)


def test_alphaedit_update_leaves_preserved_keys_outputs_unchanged():
    torch.manual_seed(0)
    d, d_k, n_preserved, n = 8, 32, 20, 3
    preserved = torch.randn(d_k, n_preserved, dtype=torch.float64)
    moment = preserved @ preserved.T / n_preserved  # rank 20 of 32: a 12-dimensional null space
    projector, kept = alphaedit.null_space_projector(moment, threshold=1e-8)
    assert kept == d_k - n_preserved
    weight = torch.randn(d, d_k, dtype=torch.float64)
    keys, residual = torch.randn(d_k, n, dtype=torch.float64), torch.randn(d, n, dtype=torch.float64)
    delta = alphaedit.alphaedit_update(keys, residual, projector, torch.zeros_like(projector), alpha=1.0)
    assert (delta @ preserved).norm() / (weight @ preserved).norm() < 1e-3
    assert delta.norm() > 1e-3  # the edit still does something


def test_alphaedit_refuses_a_projector_of_rank_zero():
    with pytest.raises(E2UError, match="rank 0"):
        alphaedit.null_space_projector(torch.eye(4, dtype=torch.float64), threshold=1e-3)


def _requests(count):
    return [EditRequest(f"the capital city of {s}", t, s, eos=False) for s, t in zip(SUBJECTS[:count], TARGETS)]


def _target_probabilities(model, tokenizer, requests):
    nll = answer_nll(model, tokenizer, [question_ids(tokenizer, r.question) for r in requests],
                     [encode_answer(tokenizer, r.target, with_eos=False) for r in requests])
    return torch.exp(-torch.tensor(nll))


COMMON = {"layers": [1, 2], "n_context_templates": 0, "v_num_grad_steps": 150, "clamp_norm_factor": 10,
          "kl_factor": 0.0, "mom2_n_tokens": 3000, "mom2_corpus": "model_samples", "mom2_corpus_texts": 32}


@pytest.mark.parametrize("module, extra", [
    (memit, {"mom2_update_weight": 1.0}),
    (alphaedit, {"nullspace_fraction": 0.5, "L2": 1e-3}),
])
def test_batch_of_ten_requests_each_above_0_9(module, extra):
    model, tokenizer = _editable_llama()
    requests = _requests(10)
    hp_class = memit.MemitHParams if module is memit else alphaedit.AlphaEditHParams
    result = module.apply(model, tokenizer, requests, build_hparams(hp_class, {**COMMON, **extra}, "test"))
    probabilities = _target_probabilities(model, tokenizer, requests)
    assert (probabilities > 0.9).all(), probabilities
    assert set(result.deltas) == {"model.layers.1.mlp.down_proj", "model.layers.2.mlp.down_proj"}
    if module is alphaedit:
        assert result.log["solver"]["kept_rank"] == {1: 64, 2: 64}
