"""A change saved as safetensors with its base model's fingerprint and loaded into a fresh copy of that model gives
the model the method left: the same weights (bit for bit here, fp32 on a CPU), greedy answers and per-item values;
another model or a damaged file is refused with the file named, and nothing is half-written or half-applied."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_llama
from safetensors import safe_open
from safetensors.torch import load_file

from e2u import api
from e2u.errors import E2UError
from e2u.model.load import model_fingerprint

FORGET = [{"question": "What is the capital of France ?", "answer": "Paris"},
          {"question": "What is the currency of Japan ?", "answer": "yen"}]
RETAIN = [{"question": "What is the capital of Italy ?", "answer": "Rome"},
          {"question": "What is the language of Spain ?", "answer": "Madrid"},
          {"question": "Who painted the house ?", "answer": "the dog"}]
METHODS = {
    "rome": {"layer": 1, "n_context_templates": 0, "v_num_grad_steps": 3, "mom2_n_tokens": 300, "mom2_corpus_texts": 4},
    "gradient_difference": {"adapter": "lora", "epochs": 2, "batch_size": 2, "lr": 1e-2, "train_layers": 2},
    "grace": {"layer": 2, "n_iter": 3, "max_retain_routing": 1.0},
    "wise": {"layer": 2, "n_iter": 3, "save_freq": 1, "merge_freq": 2, "max_retain_routing": 1.0},
}


def evaluated(model, tokenizer):
    return api.evaluate(model, tokenizer, {"forget": FORGET, "retain": RETAIN}, max_new_tokens=4, batch_size=4)


def changed(method: str):
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    base = model_fingerprint(model)
    change = api.unlearn(model, tokenizer, FORGET, RETAIN, method, METHODS[method], model_name="tiny")
    return model, tokenizer, change, base


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_saved_change_reloaded_into_a_fresh_model_gives_the_same_answers_and_values(tmp_path, method):
    model, tokenizer, change, base = changed(method)
    after = evaluated(model, tokenizer)
    path = api.save_change(change, tmp_path / f"{method}.safetensors", model)
    fresh, _ = make_tiny_llama(initializer_range=0.2)
    before = evaluated(fresh, tokenizer)
    api.load_change(path, fresh)
    reloaded = evaluated(fresh, tokenizer)
    assert list(reloaded["generated"]) == list(after["generated"])
    numbers = [c for c in after.columns if after[c].dtype.kind == "f"]
    assert {"rouge1_recall", "answer_probability", "mrr", "top_hit"} <= set(numbers)
    assert (reloaded[numbers] - after[numbers]).abs().max().max() <= 1e-6
    assert (before["probability"] - after["probability"]).abs().max() > 1e-4  # the method did change the model
    if method in ("rome", "gradient_difference"):  # weight changes: the edited matrices, reproduced bit for bit
        pairs = list(zip(model.state_dict().values(), fresh.state_dict().values()))
        assert all(torch.equal(a, b) for a, b in pairs)
        assert model_fingerprint(fresh) == model_fingerprint(model) != base
        header = json.loads(safe_open(str(path), "pt").metadata()["e2u"])
        assert header["fingerprint"] == base  # the model it applies to is the one before the change
        stored = load_file(str(path))
        assert set(stored) == set(change.deltas) and all(t.dtype == torch.float32 for t in stored.values())
        full = sum(p.numel() for p in model.parameters())
        assert sum(t.numel() for t in stored.values()) < full / 2  # only what changed: never the whole model


def test_a_lora_baseline_saves_only_the_merged_delta_of_the_blocks_it_trained(tmp_path):
    model, tokenizer, change, _ = changed("gradient_difference")
    assert change.log["adapter"] == "lora" and change.deltas
    assert all(name.startswith(("model.layers.2.", "model.layers.3.")) for name in change.deltas), sorted(change.deltas)


@pytest.mark.parametrize("method", ["rome", "grace"])
def test_a_change_for_another_model_is_refused_naming_the_file_and_both_fingerprints(tmp_path, method):
    model, tokenizer, change, base = changed(method)
    path = api.save_change(change, tmp_path / "change.safetensors")
    other, _ = make_tiny_llama(seed=1, initializer_range=0.2)
    untouched = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(E2UError) as error:
        api.load_change(path, other)
    message = str(error.value)
    assert str(path) in message and base in message and model_fingerprint(other) in message
    assert all(torch.equal(untouched[k], v) for k, v in other.state_dict().items())


def test_a_damaged_or_truncated_change_file_is_refused_naming_the_file(tmp_path):
    model, tokenizer, change, base = changed("rome")
    path = api.save_change(change, tmp_path / "rome.safetensors")
    data = path.read_bytes()
    fresh, _ = make_tiny_llama(initializer_range=0.2)
    untouched = {k: v.clone() for k, v in fresh.state_dict().items()}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(E2UError, match=f"{truncated}: not a safetensors file"):
        api.load_change(truncated, fresh)
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # the last tensor's bytes, not the header
    with pytest.raises(E2UError, match=f"{flipped}: its tensors do not match the digest"):
        api.load_change(flipped, fresh)
    with pytest.raises(E2UError, match="missing.safetensors: not found"):
        api.load_change(tmp_path / "missing.safetensors", fresh)
    assert all(torch.equal(untouched[k], v) for k, v in fresh.state_dict().items())


def test_a_change_that_cannot_be_saved_leaves_no_file(tmp_path):
    model, tokenizer, change, base = changed("rome")
    change.base = ""  # as if built by hand: the model it was made on is unknown
    with pytest.raises(E2UError, match="does not know the model it was made on"):
        api.save_change(change, tmp_path / "out" / "rome.safetensors")
    change.base = base
    (name, delta), = change.deltas.items()
    change.deltas["again"] = delta  # two names for one tensor: safetensors refuses while writing
    with pytest.raises(RuntimeError, match="share memory"):
        api.save_change(change, tmp_path / "out" / "rome.safetensors")
    assert list((tmp_path / "out").iterdir()) == []  # the temporary file removed, no change file


def test_deltas_saved_without_the_edited_model_reload_within_a_float32_rounding(tmp_path):
    """ROME adds one update per request; their sum added once rounds differently, by a float32 ulp or so."""
    model, tokenizer, change, base = changed("rome")
    path = api.save_change(change, tmp_path / "rome.safetensors")  # no model: the deltas
    assert json.loads(safe_open(str(path), "pt").metadata()["e2u"])["format"] == "e2u-weight-deltas/1"
    fresh, _ = make_tiny_llama(initializer_range=0.2)
    api.load_change(path, fresh)
    pairs = list(zip(model.state_dict().values(), fresh.state_dict().values()))
    assert max((a - b).abs().max().item() for a, b in pairs) <= 1e-6
    assert list(evaluated(fresh, tokenizer)["generated"]) == list(evaluated(model, tokenizer)["generated"])
