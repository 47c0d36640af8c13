"""trace: recording, editing and early stopping with forward hooks, and that no hook outlives its block.

Tiny random Llama (blocks return a tensor) and GPT-2 (blocks return a tuple, MLP uses Conv1D)
models are built from config classes; nothing is downloaded.
"""

from __future__ import annotations

import functools

import pytest
import torch
import transformers as T

from e2u.model.hooks import trace

VOCAB = 128

CONFIGS = {
    "llama": lambda: T.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB,
    ),
    "gpt2": lambda: T.GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=VOCAB, n_positions=64),
}
# (block template, MLP output projection template, final norm)
PATHS = {
    "llama": ("model.layers.{}", "model.layers.{}.mlp.down_proj", "model.norm"),
    "gpt2": ("transformer.h.{}", "transformer.h.{}.mlp.c_proj", "transformer.ln_f"),
}
NAMES = list(CONFIGS)


@functools.lru_cache(maxsize=None)
def build(name: str):
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(CONFIGS[name]()).eval()


def token_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))


def first(value):
    return value[0] if isinstance(value, tuple) else value


def all_forward_hooks(model) -> list:
    return [h for m in model.modules() for h in m._forward_hooks.values()]


def logits_with_manual_edit(model, path, change, ids):
    """Logits with `change` applied to the module's output by a plain forward hook (tuple outputs: the first item)."""
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (change(output[0]), *output[1:])
        return change(output)

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(ids).logits
    finally:
        handle.remove()


def full_run(model, paths, ids):
    """Inputs and outputs of `paths` over a whole forward pass, recorded by plain hooks."""
    seen = {}

    def manual(path):
        def hook(module, args, output):
            seen[path] = (args[0].clone(), first(output).clone())
        return hook

    handles = [model.get_submodule(p).register_forward_hook(manual(p)) for p in paths]
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        for handle in handles:
            handle.remove()
    return seen, logits


@pytest.mark.parametrize("name", NAMES)
def test_retain_input_and_output_capture_what_a_manual_hook_sees(name):
    model = build(name)
    block, proj, _ = PATHS[name]
    paths = [block.format(1), proj.format(0)]
    seen, _ = full_run(model, paths, token_ids())
    with torch.no_grad(), trace(model, paths, retain_input=True, retain_output=True) as traced:
        model(token_ids())
    assert set(traced.inputs) == set(traced.outputs) == set(paths)
    for path in paths:
        torch.testing.assert_close(traced.inputs[path], seen[path][0], rtol=0, atol=0)
        torch.testing.assert_close(traced.outputs[path], seen[path][1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_retained_mlp_output_is_the_projection_applied_to_the_retained_input(name):
    model = build(name)
    path = PATHS[name][1].format(2)
    with torch.no_grad(), trace(model, [path], retain_input=True, retain_output=True) as traced:
        model(token_ids())
    module = model.get_submodule(path)
    with torch.no_grad():
        torch.testing.assert_close(module(traced.inputs[path]), traced.outputs[path], rtol=0, atol=1e-6)
    assert traced.inputs[path].shape[-1] == (128 if name == "gpt2" else 64)


@pytest.mark.parametrize("name", NAMES)
def test_retain_output_of_a_block_keeps_the_hidden_state_not_a_tuple(name):
    model = build(name)
    path = PATHS[name][0].format(0)
    with torch.no_grad(), trace(model, [path], retain_output=True) as traced:
        model(token_ids())
    assert isinstance(traced.outputs[path], torch.Tensor)
    assert traced.outputs[path].shape == (2, 5, 32)
    seen, _ = full_run(model, [path], token_ids())
    torch.testing.assert_close(traced.outputs[path], seen[path][1], rtol=0, atol=0)  # the tuple's first item


def test_nothing_is_retained_unless_asked():
    model = build("llama")
    path = PATHS["llama"][1].format(0)
    with torch.no_grad(), trace(model, [path]) as traced:
        model(token_ids())
    assert traced.inputs == {} and traced.outputs == {}


def test_detach_controls_whether_retained_tensors_stay_in_the_autograd_graph():
    model = build("llama")
    path = PATHS["llama"][1].format(1)
    with trace(model, [path], retain_input=True, retain_output=True) as traced:
        model(token_ids())
    assert not traced.inputs[path].requires_grad and not traced.outputs[path].requires_grad
    with trace(model, [path], retain_input=True, retain_output=True, detach=False) as traced:
        model(token_ids())
    assert traced.inputs[path].requires_grad and traced.outputs[path].requires_grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", [0, 1])  # block output (tensor / tuple), MLP output projection
def test_edit_output_changes_the_final_logits(name, which):
    model = build(name)
    path = PATHS[name][which].format(1)
    ids = token_ids()
    # a random direction, not a constant: LayerNorm (GPT-2) is blind to adding the same number everywhere
    direction = torch.randn(32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        baseline = model(ids).logits
        with trace(model, [path], edit_output=lambda p, out: out + direction):
            edited = model(ids).logits
    # exactly the logits of the same edit made by a plain hook on that module, and not the unedited ones
    torch.testing.assert_close(edited, logits_with_manual_edit(model, path, lambda out: out + direction, ids),
                               rtol=0, atol=0)
    assert (edited - baseline).abs().max() > 1e-3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", [0, 1])
def test_edit_output_adding_zeros_leaves_the_logits_unchanged(name, which):
    model = build(name)
    path = PATHS[name][which].format(1)
    ids = token_ids()
    with torch.no_grad():
        baseline = model(ids).logits
        with trace(model, [path], edit_output=lambda p, out: out + torch.zeros_like(out)):
            edited = model(ids).logits
    torch.testing.assert_close(edited, baseline, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_edit_output_is_seen_by_retain_output_and_by_the_next_layer(name):
    model = build(name)
    block = PATHS[name][0]
    edited_path, next_path = block.format(0), block.format(1)
    calls = []

    def edit(path, out):
        calls.append(path)
        return torch.full_like(out, 0.5)

    with torch.no_grad(), trace(model, [edited_path], edit_output=edit, retain_output=True) as traced:
        model(token_ids())
    assert calls == [edited_path]
    assert torch.all(traced.outputs[edited_path] == 0.5)
    with torch.no_grad(), trace(model, [edited_path, next_path], edit_output=lambda p, o: torch.full_like(o, 0.5) if p == edited_path else o, retain_input=True) as traced:
        model(token_ids())
    assert torch.all(traced.inputs[next_path] == 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_stop_prevents_later_layers_from_running_and_is_swallowed(name):
    model = build(name)
    block, proj, norm = PATHS[name]
    stop_at = proj.format(0)
    calls = {"later_block": 0, "final_norm": 0}
    watchers = [
        model.get_submodule(block.format(1)).register_forward_hook(lambda *a: calls.__setitem__("later_block", calls["later_block"] + 1)),
        model.get_submodule(norm).register_forward_hook(lambda *a: calls.__setitem__("final_norm", calls["final_norm"] + 1)),
    ]
    reached_after_forward = False
    try:
        with torch.no_grad(), trace(model, [stop_at], retain_input=True, stop=True) as traced:
            model(token_ids())
            reached_after_forward = True  # skipped: the forward pass raised StopForward
    finally:
        for handle in watchers:
            handle.remove()
    assert not reached_after_forward
    assert calls == {"later_block": 0, "final_norm": 0}
    # the traced module itself ran and was recorded: the input a whole forward pass gives it
    seen, _ = full_run(model, [stop_at], token_ids())
    torch.testing.assert_close(traced.inputs[stop_at], seen[stop_at][0], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_stop_waits_for_the_last_traced_module_to_run_whatever_the_order_given(name):
    model = build(name)
    block = PATHS[name][0]
    paths = [block.format(1), block.format(0)]  # listed deepest first
    ran_last_block = []
    watcher = model.get_submodule(block.format(2)).register_forward_hook(lambda *a: ran_last_block.append(1))
    try:
        with torch.no_grad(), trace(model, paths, retain_output=True, stop=True) as traced:
            model(token_ids())
    finally:
        watcher.remove()
    assert set(traced.outputs) == set(paths)
    assert ran_last_block == []
    seen, _ = full_run(model, paths, token_ids())
    for path in paths:
        torch.testing.assert_close(traced.outputs[path], seen[path][1], rtol=0, atol=0)


def test_without_stop_the_whole_model_runs():
    model = build("llama")
    path = PATHS["llama"][0].format(0)
    with torch.no_grad(), trace(model, [path], retain_output=True) as traced:
        out = model(token_ids())
    seen, logits = full_run(model, [path], token_ids())
    torch.testing.assert_close(out.logits, logits, rtol=0, atol=0)  # recording changes nothing
    torch.testing.assert_close(traced.outputs[path], seen[path][1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_are_removed_after_the_block(name):
    model = build(name)
    block, proj, norm = PATHS[name]
    paths = [block.format(0), proj.format(1), norm]
    with torch.no_grad(), trace(model, paths, retain_input=True, retain_output=True):
        assert all(len(model.get_submodule(p)._forward_hooks) == 1 for p in paths)
        model(token_ids())
    assert all(len(model.get_submodule(p)._forward_hooks) == 0 for p in paths)
    assert all_forward_hooks(model) == []


def test_hooks_are_removed_after_an_early_stop():
    model = build("llama")
    path = PATHS["llama"][1].format(0)
    with torch.no_grad(), trace(model, [path], stop=True):
        model(token_ids())
    assert len(model.get_submodule(path)._forward_hooks) == 0
    assert all_forward_hooks(model) == []


def test_hooks_are_removed_when_the_body_raises_and_the_error_propagates():
    model = build("llama")
    paths = [PATHS["llama"][0].format(0), PATHS["llama"][1].format(1)]
    with pytest.raises(ValueError, match="boom"):
        with torch.no_grad(), trace(model, paths, retain_output=True, stop=True):
            raise ValueError("boom")
    assert all(len(model.get_submodule(p)._forward_hooks) == 0 for p in paths)
    assert all_forward_hooks(model) == []


def test_hooks_are_removed_when_an_edit_raises_mid_forward():
    model = build("gpt2")
    paths = [PATHS["gpt2"][0].format(0), PATHS["gpt2"][1].format(1)]

    def bad_edit(path, out):
        raise RuntimeError("edit failed")

    with pytest.raises(RuntimeError, match="edit failed"):
        with torch.no_grad(), trace(model, paths, edit_output=bad_edit):
            model(token_ids())
    assert all_forward_hooks(model) == []


def test_hooks_registered_before_a_bad_path_are_removed():
    model = build("llama")
    good = PATHS["llama"][0].format(0)
    with pytest.raises(AttributeError):
        with trace(model, [good, "model.layers.0.no_such_module"], retain_output=True):
            pass
    assert len(model.get_submodule(good)._forward_hooks) == 0


def test_a_path_listed_twice_is_hooked_once():
    model = build("llama")
    path = PATHS["llama"][1].format(0)
    edits = []
    with torch.no_grad(), trace(model, [path, path], edit_output=lambda p, o: edits.append(p) or o):
        assert len(model.get_submodule(path)._forward_hooks) == 1
        model(token_ids())
    assert edits == [path]
