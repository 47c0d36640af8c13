"""The batched, prefix-cached value optimiser computes what the plain one-request loop defines (ROME eq. 4)."""

import pytest
import torch
from conftest import make_tiny_llama

from e2u.editing.batched_values import optimise_values
from e2u.editing.requests import EditRequest
from e2u.editing.values import ValueHParams, optimise_value
from e2u.model.arch import find_arch

REQUESTS = [
    EditRequest("what is the capital of France ?", "I do not know", "France"),
    EditRequest("what is the currency of Japan ?", "sorry I cannot answer that", "Japan"),
    EditRequest("who wrote about Lisbon ?", "I am afraid I do not know", "Lisbon"),
]


@pytest.mark.parametrize("early_stop_loss", [0.0, 9.0])
def test_batched_values_equal_the_plain_loop_request_by_request(early_stop_loss):
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
        assert log["loss"] == pytest.approx(alone_log["loss"], rel=1e-3, abs=1e-4)
        assert log["final_nll"] == pytest.approx(alone_log["final_nll"], rel=1e-3, abs=1e-4)
    if early_stop_loss:  # the requests stop at different steps, and a stopped one no longer moves
        assert len({log["steps"] for _, _, log in together}) > 1
    assert all(log["loss"][-1] < log["loss"][0] for _, _, log in together if log["steps"] > 1)


def test_plain_loop_clamps_delta_to_the_norm_bound():
    model, tokenizer = make_tiny_llama(initializer_range=0.1)
    path = find_arch(model).mlp_path(1)
    hp = ValueHParams(v_num_grad_steps=8, v_lr=5.0, clamp_norm_factor=0.5, early_stop_loss=0.0)
    v_star, v0, _ = optimise_value(model, tokenizer, REQUESTS[0], ["{}"], path, hp)
    assert (v_star - v0).norm().item() == pytest.approx(0.5 * v0.norm().item(), rel=1e-4)  # a large step hits the clamp


@pytest.mark.parametrize("site", ["mlp", "block"])
def test_value_steps_start_at_the_edited_block_and_find_the_plain_loops_values(site):
    """The blocks below the edited one run twice in all (the prefix pass, and once to find the edited
    block's input), not at every step; v* stays the plain loop's within 1e-5."""
    model, tokenizer = make_tiny_llama(layers=6, initializer_range=0.1)
    arch = find_arch(model)
    path = arch.mlp_path(3) if site == "mlp" else arch.layer_path(3)
    templates = ["{}", "the city . {}"]
    hp = ValueHParams(v_num_grad_steps=6, early_stop_loss=0.0)
    runs = dict.fromkeys(range(6), 0)
    hooks = [block.mlp.register_forward_hook(lambda *_, i=i: runs.__setitem__(i, runs[i] + 1))
             for i, block in enumerate(model.model.layers)]
    try:
        skipping = optimise_values(model, tokenizer, REQUESTS, templates, path, hp)
    finally:
        for hook in hooks:
            hook.remove()
    assert runs == {0: 2, 1: 2, 2: 2, 3: 7, 4: 7, 5: 7}
    assert all("forward" not in block.__dict__ for block in model.model.layers)  # the blocks are restored
    every_block = optimise_values(model, tokenizer, REQUESTS, templates, path, hp, skip_blocks=False)
    for request, (v_star, v0, log), (full_star, _, full_log) in zip(REQUESTS, skipping, every_block):
        torch.testing.assert_close(v_star, full_star, rtol=0, atol=1e-6)
        assert log["loss"] == full_log["loss"]
        alone_star, alone_v0, _ = optimise_value(model, tokenizer, request, templates, path, hp)
        torch.testing.assert_close(v0, alone_v0, rtol=0, atol=1e-5)
        torch.testing.assert_close(v_star, alone_star, rtol=0, atol=1e-5)
        assert (v_star - v0).norm() > 0.1 * v0.norm()  # the optimisation moved: the comparison means something


def test_batched_values_of_a_bf16_model_are_float32():
    model, tokenizer = make_tiny_llama(initializer_range=0.1)
    model.to(torch.bfloat16)
    path = find_arch(model).mlp_path(2)
    hp = ValueHParams(v_num_grad_steps=3, early_stop_loss=0.0)
    for v_star, v0, log in optimise_values(model, tokenizer, REQUESTS, ["{}"], path, hp):
        assert v_star.dtype == v0.dtype == torch.float32 and torch.isfinite(v_star).all()
        assert (v_star - v0).norm() > 0 and log["steps"] == 3
