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
