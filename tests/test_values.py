"""Value optimisation for several requests in one forward pass follows each request's own trajectory."""

import pytest
import torch

from conftest import make_tiny_llama
from e2u.arch import find_arch
from e2u.editing.core import ValueHParams, optimise_value, optimise_values
from e2u.editing.requests import EditRequest

REQUESTS = [
    EditRequest("what is the capital of France ?", "I do not know", "France"),
    EditRequest("what is the currency of Japan ?", "sorry I cannot answer that", "Japan"),
    EditRequest("who wrote about Lisbon ?", "I am afraid I do not know", "Lisbon"),
]


@pytest.mark.parametrize("early_stop_loss", [0.0, 9.0])
def test_batched_values_equal_one_request_at_a_time(early_stop_loss):
    model, tokenizer = make_tiny_llama(initializer_range=0.1)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # losses then start near 13, 9 and 11: a 9.0 threshold stops them apart
    path = find_arch(model).mlp_path(1)
    templates = ["{}", "the city . {}"]
    hp = ValueHParams(v_num_grad_steps=20, v_lr=0.5, early_stop_loss=early_stop_loss)
    together = optimise_values(model, tokenizer, REQUESTS, templates, path, hp)
    for request, (v_star, v0, log) in zip(REQUESTS, together):
        alone_star, alone_v0, alone_log = optimise_value(model, tokenizer, request, templates, path, hp)
        torch.testing.assert_close(v0, alone_v0, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(v_star, alone_star, rtol=1e-3, atol=1e-4)
        assert log["steps"] == alone_log["steps"]
    if early_stop_loss:  # the requests stop at different steps, and a stopped one no longer moves
        assert len({log["steps"] for _, _, log in together}) > 1
    assert all(log["loss"][-1] < log["loss"][0] for _, _, log in together if log["steps"] > 1)


def test_cached_prefixes_follow_the_one_prompt_at_a_time_reference():
    """The prefix cache and suffix-only steps give the same values as full passes, one prompt at a time
    (bench/naive_editing.py: the reference written like ROME's compute_v)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from naive_editing import naive_optimise_value

    model, tokenizer = make_tiny_llama(initializer_range=0.1)
    path = find_arch(model).mlp_path(1)
    templates = ["{}", "the city . {}"]
    hp = ValueHParams(v_num_grad_steps=6, v_lr=0.5, early_stop_loss=0.0)
    for request, (v_star, v0, log) in zip(REQUESTS, optimise_values(model, tokenizer, REQUESTS, templates, path, hp)):
        ref_star, ref_v0, ref_log = naive_optimise_value(model, tokenizer, request, templates, path, hp)
        torch.testing.assert_close(v0, ref_v0, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(v_star, ref_star, rtol=1e-3, atol=1e-4)
        assert log["loss"] == pytest.approx(ref_log["loss"], rel=1e-3, abs=1e-4)
