"""Second-moment statistics: one pass equals separate passes; the disk cache is never trusted blindly."""

import pytest
import torch
from conftest import make_tiny_llama

from e2u.editing import stats
from e2u.editing.corpus import Corpus
from e2u.editing.stats import second_moments
from e2u.files import e2u_home
from e2u.model.arch import find_arch

CORPUS = Corpus("test", tuple(f"the capital of France is Paris and the dog {i} lives in a house" for i in range(40)))


def test_statistics_from_one_pass_over_all_layers_equal_separate_passes():
    model, tokenizer = make_tiny_llama()
    arch = find_arch(model)
    together = second_moments(model, tokenizer, arch, [0, 2], CORPUS, n_tokens=300, use_cache=False)
    for layer in (0, 2):
        alone = second_moments(model, tokenizer, arch, [layer], CORPUS, n_tokens=300, use_cache=False)[layer]
        assert torch.allclose(together[layer], alone, atol=1e-6)
        assert together[layer].shape == (arch.key_size, arch.key_size)
        assert torch.allclose(together[layer], together[layer].T)  # a second moment is symmetric
    assert not torch.allclose(together[0], together[2])  # and each layer has its own


def test_second_moment_matches_a_direct_computation():
    from e2u.model.hooks import trace

    model, tokenizer = make_tiny_llama()
    arch = find_arch(model)
    text = CORPUS.texts[0]
    moment = second_moments(model, tokenizer, arch, [1], Corpus("one", (text,)), n_tokens=10_000, use_cache=False)[1]
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with trace(model, [arch.mlp_out_path(1)], retain_input=True) as t:
        model(ids)
    keys = t.inputs[arch.mlp_out_path(1)][0]
    assert torch.allclose(moment, keys.T @ keys / keys.shape[0], atol=1e-6)


def test_batched_early_stopped_statistics_equal_the_plain_definition_under_a_token_budget():
    """Batches of padded documents, a pass that stops after the deepest layer, and a token budget that
    ends inside a document give the one-document-at-a-time full-pass definition (`plain_second_moments`)."""
    model, tokenizer = make_tiny_llama()
    arch = find_arch(model)
    corpus = Corpus("mixed", tuple(" ".join(["the dog lives in a house"] * (1 + i % 5)) for i in range(30)))
    fast = second_moments(model, tokenizer, arch, [1, 3], corpus, n_tokens=257, batch_tokens=64, use_cache=False)
    plain = stats.plain_second_moments(model, tokenizer, arch, [1, 3], corpus, n_tokens=257)
    for layer in (1, 3):
        torch.testing.assert_close(fast[layer], plain[layer], rtol=1e-5, atol=1e-6)


def test_an_unknown_moment_dtype_is_an_error_naming_the_allowed_ones():
    from e2u.editing.rome import RomeHParams
    from e2u.errors import E2UError

    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match=r"mom2_dtype.*float32.*float64.*'float16'"):
        stats.layer_moments(model, tokenizer, find_arch(model), [1], RomeHParams(mom2_dtype="float16"))


def test_cached_statistics_are_reused_and_a_truncated_file_is_recomputed(monkeypatch):
    model, tokenizer = make_tiny_llama()
    arch = find_arch(model)
    first = second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200)[1]
    files = list(e2u_home().joinpath("stats").rglob("*.safetensors"))
    assert len(files) == 1
    calls = []
    original = stats._accumulate
    monkeypatch.setattr(stats, "_accumulate", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert torch.equal(second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200)[1], first)
    assert calls == []  # served from the cache
    files[0].write_bytes(files[0].read_bytes()[:100])  # an interrupted write
    again = second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200)[1]
    assert calls == [1] and torch.allclose(again, first)


def test_statistics_of_another_model_are_not_reused():
    model, tokenizer = make_tiny_llama(seed=0)
    other, _ = make_tiny_llama(seed=1)
    arch = find_arch(model)
    mine = second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200)[1]
    theirs = second_moments(other, tokenizer, arch, [1], CORPUS, n_tokens=200)[1]
    assert not torch.allclose(mine, theirs)
    # each is its own model's statistic, as computed without any cache
    assert torch.equal(theirs, second_moments(other, tokenizer, arch, [1], CORPUS, n_tokens=200, use_cache=False)[1])
    assert torch.equal(mine, second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200, use_cache=False)[1])
    assert len(list(e2u_home().joinpath("stats").rglob("*.safetensors"))) == 2


def test_question_bank_shares_no_entity_with_the_evaluation_set():
    from e2u.data.sources import load_source
    from e2u.editing.corpus import question_bank_corpus

    _, tokenizer = make_tiny_llama()
    bank = " ".join(question_bank_corpus(tokenizer).texts).lower()
    subjects = {r.subject.lower() for records in load_source("mini").values() for r in records}
    assert not [s for s in subjects if s in bank]


def test_statistics_interrupted_while_saving_leave_no_file_a_later_run_would_trust(monkeypatch):
    import pytest

    from e2u import cache

    model, tokenizer = make_tiny_llama()
    arch = find_arch(model)

    def dies_halfway(tensors, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "save_file", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        second_moments(model, tokenizer, arch, [1], CORPUS, n_tokens=200)
    assert not [p for p in e2u_home().rglob("*") if p.is_file()]


def test_statistics_corpus_reads_a_local_text_file_and_names_bad_choices(tmp_path):
    from e2u.editing.corpus import statistics_corpus
    from e2u.errors import E2UError

    path = tmp_path / "wiki.txt"
    path.write_text("Paris is the capital of France.\n\nThe yen is the currency of Japan.\n")
    corpus = statistics_corpus(None, None, f"file:{path}", 0, 0)
    assert corpus.texts == ("Paris is the capital of France.", "The yen is the currency of Japan.")
    assert "wiki.txt" in corpus.name
    with pytest.raises(E2UError, match="does not exist"):
        statistics_corpus(None, None, f"file:{tmp_path / 'missing.txt'}", 0, 0)
    with pytest.raises(E2UError, match="mom2_corpus: expected"):
        statistics_corpus(None, None, "wikipedia", 0, 0)


def test_hub_corpus_offline_says_how_to_proceed(monkeypatch):
    import datasets

    from e2u.editing.corpus import statistics_corpus
    from e2u.errors import E2UError

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(E2UError, match="could not read hub data set 'Salesforce/wikitext@wikitext-103-raw-v1'.*file:<path>"):
        statistics_corpus(None, None, "hub:Salesforce/wikitext@wikitext-103-raw-v1", 0, 0)
