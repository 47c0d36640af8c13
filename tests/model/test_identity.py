"""The tuned defaults are found by what a model is (its architecture and weights), not by the name it is given."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_llama

from e2u.cell.check import model_skeleton
from e2u.hparams import build_hparams, family_defaults
from e2u.methods import get_method, method_hparams
from e2u.model.identity import Identity, tuned_identity
from e2u.model.source import EMBEDDED_MODEL

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# SmolLM2-135M-Instruct's config.json as the hub publishes it (bf16 weights, written by another transformers)
HUB_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041,
    "intermediate_size": 1536, "is_llama_config": True, "max_position_embeddings": 8192, "model_type": "llama",
    "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None,
    "rope_theta": 100000, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.42.3", "use_cache": True, "vocab_size": 49152,
}
METHODS = ("rome", "memit", "alphaedit", "grace", "wise", "gradient_ascent", "npo")


def hub_format_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(HUB_CONFIG))
    return root


def embedded_hparams(skeleton) -> dict:
    return {m: dataclasses.asdict(method_hparams(m, skeleton, EMBEDDED_MODEL, {})) for m in METHODS}


def test_smollm2_named_by_a_local_hub_format_directory_gets_the_embedded_defaults(tmp_path):
    directory = hub_format_dir(tmp_path / "SmolLM2-135M-Instruct")
    skeleton = model_skeleton(str(directory))
    assert tuned_identity(skeleton, str(directory)).name == EMBEDDED_MODEL
    assert tuned_identity(skeleton, str(directory)).matched_by == "architecture"  # a skeleton has no weights
    found = {m: dataclasses.asdict(method_hparams(m, skeleton, str(directory), {})) for m in METHODS}
    assert found == embedded_hparams(skeleton)
    # the embedded rows of the YAML files were read: rome's layer and the baselines' lr are the embedded ones
    assert found["rome"]["layer"] == family_defaults("rome", "llama", EMBEDDED_MODEL)["layer"] != "auto"
    assert found["npo"]["lr"] == family_defaults("npo", "llama", EMBEDDED_MODEL)["lr"]
    assert found["npo"]["lr"] != build_hparams(get_method("npo").hparams, {}, "npo").lr  # not the 7B default


def test_smollm2_named_by_its_hub_id_gets_the_embedded_defaults(tmp_path, monkeypatch):
    """The hub id resolved offline from a hub cache holding the model's config (as a download leaves it)."""
    import huggingface_hub.constants
    import transformers.utils.hub

    cache = tmp_path / "hub"
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    hub_format_dir(repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(cache), raising=False)
    skeleton = model_skeleton(HUB_ID)
    assert skeleton.config.hidden_size == HUB_CONFIG["hidden_size"]
    assert tuned_identity(skeleton, HUB_ID).name == EMBEDDED_MODEL
    assert {m: dataclasses.asdict(method_hparams(m, skeleton, HUB_ID, {})) for m in METHODS} == \
        embedded_hparams(skeleton)


def test_another_architecture_keeps_its_name_and_its_family_defaults():
    model, _ = make_tiny_llama()
    assert tuned_identity(model, HUB_ID).matched_by == "none"
    tiny = dataclasses.asdict(method_hparams("memit", model, HUB_ID, {}))
    assert tiny["layers"] == family_defaults("memit", "llama", HUB_ID)["layers"] == "auto"
    assert tiny != dataclasses.asdict(method_hparams("memit", model, EMBEDDED_MODEL, {}))


@pytest.mark.slow
def test_the_embedded_weights_in_a_local_directory_are_recognised_by_their_fingerprint(tmp_path, monkeypatch):
    # The conversion takes ~40 s: share the user's cache rather than converting per test.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))
    from e2u.model.load import load_model

    model, tokenizer = load_model(EMBEDDED_MODEL, device="cpu")
    model.save_pretrained(tmp_path / "copy")
    tokenizer.save_pretrained(tmp_path / "copy")
    copy, _ = load_model(str(tmp_path / "copy"), device="cpu")
    assert tuned_identity(copy, str(tmp_path / "copy")).matched_by == "weights"
    assert dataclasses.asdict(method_hparams("grace", copy, str(tmp_path / "copy"), {})) == \
        dataclasses.asdict(method_hparams("grace", model, EMBEDDED_MODEL, {}))
    with torch.no_grad():
        copy.model.layers[3].mlp.down_proj.weight.add_(1e-3)  # finetuned: same architecture, other weights
    assert tuned_identity(copy, str(tmp_path / "copy")) == Identity(EMBEDDED_MODEL, "architecture")
