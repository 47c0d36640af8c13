"""find_arch: module paths, sizes and the LM-head route, checked on tiny random models of each family.

The models are built from transformers config classes (no download), a few milliseconds each.
"""

from __future__ import annotations

import functools

import pytest
import torch
import transformers as T

from e2u.errors import E2UError
from e2u.model.arch import find_arch, is_conv1d, projection_shape
from e2u.model.hooks import trace

VOCAB = 128
HIDDEN = 32
LLAMA_LIKE = dict(
    hidden_size=HIDDEN,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=VOCAB,
)

CONFIGS = {
    "llama": lambda: T.LlamaConfig(**LLAMA_LIKE, tie_word_embeddings=False),
    "llama-tied": lambda: T.LlamaConfig(**LLAMA_LIKE, tie_word_embeddings=True),
    "qwen2": lambda: T.Qwen2Config(**LLAMA_LIKE),
    "mistral": lambda: T.MistralConfig(**LLAMA_LIKE),
    "gemma": lambda: T.GemmaConfig(**LLAMA_LIKE, head_dim=8),
    "gpt2": lambda: T.GPT2Config(n_embd=HIDDEN, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64),
    # n_inner set explicitly so the key size is not the 4*n_embd fallback (that is covered by gpt2).
    "gpt2-n_inner": lambda: T.GPT2Config(n_embd=HIDDEN, n_layer=3, n_head=4, n_inner=48, vocab_size=VOCAB, n_positions=64),
    "gptj": lambda: T.GPTJConfig(n_embd=HIDDEN, n_layer=2, n_head=4, rotary_dim=4, vocab_size=VOCAB, n_positions=64),
    "gpt-neox": lambda: T.GPTNeoXConfig(
        hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=VOCAB, max_position_embeddings=64,
    ),
}

LLAMA_PATHS = dict(
    layers="model.layers",
    mlp="model.layers.{}.mlp",
    mlp_out="model.layers.{}.mlp.down_proj",
    final_norm="model.norm",
)
GPT2_PATHS = dict(
    layers="transformer.h",
    mlp="transformer.h.{}.mlp",
    mlp_out="transformer.h.{}.mlp.c_proj",
    final_norm="transformer.ln_f",
)

# name -> (paths, n_layers, key_size, tied_embeddings)
EXPECTED = {
    "llama": (LLAMA_PATHS, 2, 64, False),
    "llama-tied": (LLAMA_PATHS, 2, 64, True),
    "qwen2": (LLAMA_PATHS, 2, 64, False),
    "mistral": (LLAMA_PATHS, 2, 64, False),
    "gemma": (LLAMA_PATHS, 2, 64, True),
    "gpt2": (GPT2_PATHS, 2, 4 * HIDDEN, True),
    "gpt2-n_inner": (GPT2_PATHS, 3, 48, True),
    "gptj": (
        dict(
            layers="transformer.h",
            mlp="transformer.h.{}.mlp",
            mlp_out="transformer.h.{}.mlp.fc_out",
            final_norm="transformer.ln_f",
        ),
        2, 4 * HIDDEN, False,
    ),
    "gpt-neox": (
        dict(
            layers="gpt_neox.layers",
            mlp="gpt_neox.layers.{}.mlp",
            mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
            final_norm="gpt_neox.final_layer_norm",
        ),
        2, 64, False,
    ),
}

NAMES = list(CONFIGS)


@functools.lru_cache(maxsize=None)
def build(name: str):
    """A tiny random model; 1-d parameters (norm scales, biases) are perturbed so that a norm
    left out of (or put twice into) a computation shows in the numbers."""
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(CONFIGS[name]()).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(0.3 * torch.randn_like(param))
    return model


def token_ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_find_arch_locates_blocks_mlp_projections_and_final_norm(name):
    paths, _, _, _ = EXPECTED[name]
    arch = find_arch(build(name))
    assert arch.layers == paths["layers"]
    assert arch.mlp == paths["mlp"]
    assert arch.mlp_out == paths["mlp_out"]
    assert arch.final_norm == paths["final_norm"]


@pytest.mark.parametrize("name", NAMES)
def test_find_arch_reports_layer_count_hidden_size_and_key_size(name):
    model = build(name)
    _, n_layers, key_size, _ = EXPECTED[name]
    arch = find_arch(model)
    assert arch.n_layers == n_layers
    assert arch.hidden_size == HIDDEN
    assert arch.key_size == key_size


def test_find_arch_key_size_of_gpt2_is_n_inner_or_four_times_n_embd():
    for name in ("gpt2", "gpt2-n_inner"):
        config = build(name).config
        assert find_arch(build(name)).key_size == (config.n_inner or 4 * config.n_embd)


@pytest.mark.parametrize("name", NAMES)
def test_paths_resolve_to_modules_for_every_layer(name):
    model = build(name)
    arch = find_arch(model)
    blocks = model.get_submodule(arch.layers)
    assert len(blocks) == arch.n_layers
    for i in range(arch.n_layers):
        assert arch.layer_path(i) == f"{arch.layers}.{i}"
        assert arch.mlp_path(i) == arch.mlp.format(i)
        assert arch.mlp_out_path(i) == arch.mlp_out.format(i)
        # the i-th block, and modules inside that block (not another layer's)
        block = model.get_submodule(arch.layer_path(i))
        assert block is blocks[i]
        inside = {id(m) for m in block.modules()}
        mlp = model.get_submodule(arch.mlp_path(i))
        assert id(mlp) in inside
        assert id(model.get_submodule(arch.mlp_out_path(i))) in {id(m) for m in mlp.modules()}


@pytest.mark.parametrize("name", NAMES)
def test_lm_head_of_the_final_norm_of_the_last_block_output_reproduces_model_logits(name):
    model = build(name)
    arch = find_arch(model)
    last_block = arch.layer_path(arch.n_layers - 1)
    with torch.no_grad(), trace(model, [last_block], retain_output=True) as traced:
        logits = model(token_ids()).logits
    pre_norm = traced.outputs[last_block]
    with torch.no_grad():
        found = model.get_output_embeddings()(model.get_submodule(arch.final_norm)(pre_norm))
    torch.testing.assert_close(found, logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["llama", "gpt2", "gpt-neox"])
def test_hf_last_hidden_states_entry_is_already_normed_so_callers_must_trace_the_block(name):
    """transformers 4.57 returns the *post*-final-norm state as hidden_states[-1]; logits_from_hidden
    is applied to the pre-norm residual stream (the last block's output), which is why the test above traces it."""
    model = build(name)
    arch = find_arch(model)
    last_block = arch.layer_path(arch.n_layers - 1)
    with torch.no_grad(), trace(model, [last_block, arch.final_norm], retain_output=True) as traced:
        out = model(token_ids(), output_hidden_states=True)
    assert len(out.hidden_states) == arch.n_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], traced.outputs[arch.final_norm], rtol=0, atol=1e-6)
    assert not torch.allclose(out.hidden_states[-1], traced.outputs[last_block], atol=1e-3)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
@pytest.mark.parametrize("bad", [99, 2, -1])
def test_layer_index_out_of_range_raises_e2uerror_naming_the_valid_range(name, bad):
    arch = find_arch(build(name))
    with pytest.raises(E2UError, match=r"0\.\.1"):
        arch.layer_path(bad)
    with pytest.raises(E2UError, match=r"0\.\.1"):
        arch.mlp_out_path(bad)
    with pytest.raises(E2UError, match=r"0\.\.1"):
        arch.mlp_path(bad)


@pytest.mark.parametrize("name", NAMES)
def test_key_traced_at_mlp_out_input_has_key_size_width(name):
    model = build(name)
    arch = find_arch(model)
    path = arch.mlp_out_path(arch.n_layers - 1)
    ids = token_ids()
    with torch.no_grad(), trace(model, [path], retain_input=True, stop=True) as traced:
        model(ids)
    assert traced.inputs[path].shape == (*ids.shape, arch.key_size)


@pytest.mark.parametrize("name", NAMES)
def test_mlp_out_is_the_key_to_hidden_projection_in_its_stored_layout(name):
    model = build(name)
    arch = find_arch(model)
    module = model.get_submodule(arch.mlp_out.format(0))
    assert projection_shape(module) == (arch.key_size, arch.hidden_size)
    conv1d = is_conv1d(module)
    assert conv1d == name.startswith("gpt2")
    expected = (arch.key_size, arch.hidden_size) if conv1d else (arch.hidden_size, arch.key_size)
    assert tuple(module.weight.shape) == expected
