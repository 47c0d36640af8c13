"""The model fingerprint that keys every on-disk cache (statistics, corpora, evaluations)."""

import torch

from conftest import make_tiny_llama
from e2u.models import model_fingerprint


def test_fingerprint_sees_a_small_rank_one_edit_and_not_the_thread_count():
    model, _ = make_tiny_llama(hidden=256, intermediate=512)
    before = model_fingerprint(model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert model_fingerprint(model) == before
    finally:
        torch.set_num_threads(threads)
    weight = model.model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        weight.add_(1e-4 * torch.outer(torch.randn(weight.shape[0]), torch.randn(weight.shape[1])))
    assert model_fingerprint(model) != before


def test_fingerprint_ignores_where_the_model_was_loaded_from():
    a, _ = make_tiny_llama()
    b, _ = make_tiny_llama()
    b.config._name_or_path = "/somewhere/else"
    assert model_fingerprint(a) == model_fingerprint(b)
