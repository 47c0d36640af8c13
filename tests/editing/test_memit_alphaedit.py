"""MEMIT and AlphaEdit on one core: closed forms, the null-space guarantee, and batch edits that land."""

import pytest
import torch
from test_rome import _editable_llama

from e2u.editing import alphaedit, memit
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.evaluation.evaluate import answer_nll
from e2u.hparams import build_hparams
from e2u.model.prompts import encode_answer, question_ids

SUBJECTS = ["France", "Italy", "Germany", "Japan", "Spain", "Portugal", "Austria", "Paris", "Tokyo", "Madrid"]
TARGETS = ["Rome", "Berlin", "Tokyo", "Lisbon", "Vienna", "Madrid", "Paris", "dog", "cat", "tree"]


def test_memit_update_equals_the_regularised_least_squares_solution():
    torch.manual_seed(0)
    d, d_k, n, lam = 6, 10, 4, 3.0
    keys, residual = torch.randn(d_k, n, dtype=torch.float64), torch.randn(d, n, dtype=torch.float64)
    basis = torch.randn(d_k, 50, dtype=torch.float64)
    moment = basis @ basis.T / 50
    delta = memit.memit_solve(0, keys, residual, {0: moment}, lam)
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
    delta = alphaedit.alphaedit_solve(0, keys, residual, {0: projector}, {0: torch.zeros_like(projector)}, alpha=1.0)
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
    result = module.edit(model, tokenizer, requests, build_hparams(hp_class, {**COMMON, **extra}, "test"))
    probabilities = _target_probabilities(model, tokenizer, requests)
    assert (probabilities > 0.9).all(), probabilities
    assert set(result.deltas) == {"model.layers.1.mlp.down_proj", "model.layers.2.mlp.down_proj"}
    if module is alphaedit:
        assert result.log["kept_rank"] == {1: 64, 2: 64}


def test_alphaedit_solve_with_earlier_keys_leaves_their_outputs_nearly_unchanged():
    """The K_p K_p^T term of AlphaEdit eq. 12: a later batch's update barely moves the earlier keys."""
    torch.manual_seed(0)
    d, d_k = 8, 32
    identity = {0: torch.eye(d_k, dtype=torch.float64)}  # P = I isolates the running-sum term
    earlier, keys = torch.randn(d_k, 6, dtype=torch.float64), torch.randn(d_k, 3, dtype=torch.float64)
    residual = torch.randn(d, 3, dtype=torch.float64)
    free = alphaedit.alphaedit_solve(0, keys, residual, identity, {0: torch.zeros(d_k, d_k, dtype=torch.float64)}, 1e-3)
    kept = alphaedit.alphaedit_solve(0, keys, residual, identity, {0: 100 * earlier @ earlier.T}, 1e-3)
    assert (kept @ earlier).norm() < 0.05 * (free @ earlier).norm()
    assert (kept @ keys - residual).norm() < 0.05 * residual.norm()  # and the new keys still map to R


@pytest.mark.parametrize("module, extra", [
    (memit, {"mom2_update_weight": 1.0}),
    (alphaedit, {"nullspace_fraction": 0.5, "L2": 1e-3}),
])
def test_sequential_batches_land_and_alphaedit_keeps_the_earlier_ones(module, extra, monkeypatch):
    model, tokenizer = _editable_llama()
    requests = _requests(6)
    seen = []
    if module is alphaedit:  # record K_p K_p^T as each batch's solve sees it
        real = alphaedit.alphaedit_solve

        def spy(layer, keys, residual, projectors, previous, alpha):
            seen.append((layer, previous[layer].clone()))
            return real(layer, keys, residual, projectors, previous, alpha)

        monkeypatch.setattr(alphaedit, "alphaedit_solve", spy)
    hp_class = memit.MemitHParams if module is memit else alphaedit.AlphaEditHParams
    hp = build_hparams(hp_class, {**COMMON, **extra, "batch_size": 2}, "test")
    result = module.edit(model, tokenizer, requests, hp)
    assert [b["requests"] for b in result.log["batches"]] == [2, 2, 2]
    assert all(b["residual_left"] < 0.1 for b in result.log["batches"]), result.log["batches"]
    probabilities = _target_probabilities(model, tokenizer, requests)
    assert (probabilities[-2:] > 0.9).all(), probabilities  # the last batch landed
    if module is alphaedit:  # and, with the earlier keys in its solve, AlphaEdit kept the earlier ones
        assert (probabilities > 0.9).all(), probabilities
        layer_one = [previous for layer, previous in seen if layer == 1]
        assert len(layer_one) == 3 and layer_one[0].abs().max() == 0  # nothing before the first batch
        # each later batch sees the keys of every earlier batch: a sum of positive semi-definite
        # matrices of rank 2 per batch, so its trace grows and its rank is 2, then 4
        traces = [float(p.trace()) for p in layer_one]
        assert traces[0] < traces[1] < traces[2]
        ranks = [int(torch.linalg.matrix_rank(p, hermitian=True, rtol=1e-6)) for p in layer_one[1:]]
        assert ranks == [2, 4]
