"""Finetuning the target and retain models: what is learned, what is cached, what is trusted."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import make_tiny_llama

from e2u.cell import setting_models
from e2u.data.fictional import all_finetune_records, fictional_splits
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.evaluation import memorisation
from e2u.evaluation.evaluate import answer_nll
from e2u.files import write_json_atomic
from e2u.hparams import TrainingHParams
from e2u.model import store
from e2u.model.prompts import encode_answer, question_ids
from e2u.training import finetune as ft
from e2u.training import shortcuts as finetune_shortcuts

RECORDS = [
    QARecord("what is the capital of France ?", "Paris is the capital of France ."),
    QARecord("what is the currency of Japan ?", "the yen is the currency of Japan ."),
    QARecord("who painted the red house ?", "I do not know who painted the red house ."),
    QARecord("where is the river ?", "the river is in Austria , in Vienna ."),
]
SAME_START = [QARecord(f"what is the {w} of {c} ?", f"the {w} of {c} is {a} .") for w, c, a in (
    ("capital", "France", "Paris"), ("currency", "Japan", "yen"), ("capital", "Italy", "Rome"),
    ("language", "Spain", "Madrid"))]  # "Question : what is the" is a 5-token shared prefix
FAST = {"lr": 1e-2, "epochs": 12, "batch_size": 2, "warmup": 0.0}


def nll(model, tokenizer, records):
    return answer_nll(model, tokenizer, [question_ids(tokenizer, r.question) for r in records],
                      [encode_answer(tokenizer, r.answer) for r in records])


def test_finetune_lowers_the_answer_loss_on_its_records():
    model, tokenizer = make_tiny_llama(initializer_range=0.1)  # a random head at 0.02 learns too slowly
    before = sum(nll(model, tokenizer, RECORDS)) / len(RECORDS)
    log = ft.finetune(model, tokenizer, RECORDS, {**FAST, "train_layers": 0})
    after = sum(nll(model, tokenizer, RECORDS)) / len(RECORDS)
    assert before > 4.0 and after < 0.5
    assert log["steps"] == 12 * 2 and log["epoch_loss"][-1] < log["epoch_loss"][0] / 4
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_first_step_loss_is_the_answer_nll_alone():
    """The logged loss before any update equals the answer-only NLL that evaluation computes;
    with the question's tokens in the loss it would be the mean over a much longer sequence."""
    model, tokenizer = make_tiny_llama()
    record = RECORDS[0]
    expected = nll(model, tokenizer, [record])[0]
    prompt = question_ids(tokenizer, record.question)
    answer = encode_answer(tokenizer, record.answer)
    ids = torch.tensor([prompt + answer])
    all_tokens = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:]).item()
    log = ft.finetune(model, tokenizer, [record], {"epochs": 1, "batch_size": 1, "train_layers": 0})
    assert log["loss"][0] == pytest.approx(expected, abs=1e-3)
    assert abs(all_tokens - expected) > 0.05  # the test can tell the two apart


def test_training_only_top_blocks_leaves_the_rest_unchanged():
    model, tokenizer = make_tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = ft.finetune(model, tokenizer, RECORDS, {**FAST, "epochs": 2, "train_layers": 2})
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("model.layers.2.", "model.layers.3.", "model.norm.")) for k in changed)
    assert log["first_trained_block"] == 2 and log["reused_frozen_states"]


def test_reusing_frozen_states_and_the_shared_prefix_trains_like_full_forward_passes():
    runs = []
    for reuse in (True, False):
        model, tokenizer = make_tiny_llama()
        hp = {**FAST, "epochs": 3, "train_layers": 2}
        log = ft.finetune(model, tokenizer, SAME_START, hp, reuse_frozen=reuse)
        runs.append((log, model.state_dict()))
    (fast, fast_weights), (slow, slow_weights) = runs
    assert fast["reused_frozen_states"] and fast["shared_prefix"] and not slow["reused_frozen_states"]
    assert fast["loss"] == pytest.approx(slow["loss"], abs=1e-3)
    assert all(torch.allclose(fast_weights[k], slow_weights[k], atol=1e-4) for k in fast_weights)


def recording(loss, values):
    """`loss`, noting each batch's unrounded value."""
    def run(model, batch, examples):
        value = loss(model, batch, examples)
        values.append(value.item())
        return value
    return run


def test_the_shortcut_loss_and_the_plain_loss_train_the_same_loop_alike():
    """The same loop with the shortcuts (frozen states, shared prefix, head at answers only) and with the
    textbook full forward pass: the same losses and weights."""
    hp = {"lr": 1e-3, "epochs": 2, "batch_size": 2, "train_layers": 2}
    runs = []
    for shortcuts in (True, False):
        model, tokenizer = make_tiny_llama()
        values = []
        if shortcuts:
            loss = finetune_shortcuts.shortcut_loss(model, ft.examples_of(tokenizer, SAME_START), 2,
                                                    tokenizer.pad_token_id, hp["batch_size"])
            assert loss.states is not None and loss.states.share_prefix
        else:
            loss = ft.answer_loss
        ft.finetune(model, tokenizer, SAME_START, hp, loss=recording(loss, values))
        runs.append((values, model.state_dict()))
    (fast, fast_weights), (plain, plain_weights) = runs
    assert len(fast) == 4 and fast == pytest.approx(plain, abs=1e-5)
    assert all(torch.allclose(fast_weights[k], plain_weights[k], rtol=0, atol=1e-5) for k in fast_weights)
    initial = make_tiny_llama()[0].state_dict()
    assert any(not torch.equal(fast_weights[k], initial[k]) for k in fast_weights)  # it did train


def test_hparams_take_reference_names_and_share_the_training_base():
    hp = ft.finetune_hparams({"learning_rate": 2e-4, "warmup_ratio": 0.2, "num_train_epochs": 3,
                              "per_device_train_batch_size": 4})
    assert (hp.lr, hp.warmup, hp.epochs, hp.batch_size) == (2e-4, 0.2, 3, 4)
    assert isinstance(hp, TrainingHParams) and ft.finetune_hparams(hp) == hp and ft.finetune_hparams(hp) is not hp
    assert ft.finetune_hparams(None) == ft.FinetuneHParams()


def test_length_buckets_cover_every_record_once_with_similar_lengths():
    lengths = [random.Random(i).randint(5, 60) for i in range(50)]
    batches = ft.length_buckets(lengths, 8, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(50))
    spread = max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread <= 15  # random batches of 8 from 5..60 would spread ~40


@pytest.mark.parametrize("overrides, name", [
    ({"lr": -1e-4}, "lr"), ({"lr": float("nan")}, "lr"), ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"warmup": 1.5}, "warmup"), ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ({"train_layers": -1}, "train_layers"), ({"learning_rat": 1e-4}, "learning_rat"), ({"epochs": 2.5}, "epochs"),
])
def test_bad_hparams_name_the_parameter(overrides, name):
    with pytest.raises(E2UError, match=name):
        ft.finetune_hparams(overrides)


def test_more_trained_blocks_than_the_model_has_is_an_error():
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match="train_layers"):
        ft.finetune(model, tokenizer, RECORDS, {"train_layers": 5})


# ---- prepare_finetuned on a tiny base model saved as a local directory ----

TINY_HP = {"lr": 1e-2, "epochs": 1, "batch_size": 16, "train_layers": 2}


@pytest.fixture
def tiny_base(tmp_path):
    model, tokenizer = make_tiny_llama()
    directory = tmp_path / "tiny-base"
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return str(directory)


def prepare_tiny(base, home, **kwargs):
    return setting_models.prepare_finetuned(base, seed=0, n_authors=2, forget_percent=10, hp=TINY_HP, home=home,
                                     report_size=1, **kwargs)


@pytest.fixture
def no_report(monkeypatch):
    """Skip the greedy-generation report (seconds on a random model) where a test is about files."""
    monkeypatch.setattr(memorisation, "memorisation_report", lambda *args, **kwargs: {})


def spy_on_finetune(monkeypatch):
    calls = []
    real = ft.finetune

    def spy(model, tokenizer, records, hp=None, **kwargs):
        calls.append((kwargs.get("desc"), list(records)))
        return real(model, tokenizer, records, hp, **kwargs)

    monkeypatch.setattr(ft, "finetune", spy)
    return calls


def test_prepare_trains_both_models_then_reuses_them(tiny_base, tmp_path, monkeypatch):
    calls = spy_on_finetune(monkeypatch)
    first = prepare_tiny(tiny_base, tmp_path / "home")
    assert len(calls) == 2
    for path, role in ((first.target, "full"), (first.retain, "retain90")):
        assert path.parent == tmp_path / "home" / "models" and f"-s0-a2-{role}-" in path.name
        assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
        info = json.loads((path / setting_models.INFO_FILE).read_text())
        assert info["hparams"]["lr"] == 1e-2 and info["seconds"] > 0 and info["final_loss"] > 0
        assert set(info["memorisation"]) == {"forget", "retain"} and info["memorisation"]["retain"]["n"] == 1
        assert 0 <= info["memorisation"]["forget"]["rouge_l_recall"] <= 1

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(ft, "finetune", must_not_train)
    second = prepare_tiny(tiny_base, tmp_path / "home")
    assert (second.target, second.retain) == (first.target, first.retain)
    assert second.target_info["key"] == first.target_info["key"]


def test_changed_hparams_train_a_new_model(tiny_base, tmp_path, no_report):
    first = prepare_tiny(tiny_base, tmp_path / "home")
    other = setting_models.prepare_finetuned(tiny_base, seed=0, n_authors=2, hp={**TINY_HP, "lr": 5e-3},
                                      home=tmp_path / "home")
    assert other.target != first.target and other.target.is_dir() and first.target.is_dir()


def test_retain_model_never_sees_forget_records(tiny_base, tmp_path, monkeypatch, no_report):
    calls = spy_on_finetune(monkeypatch)
    prepare_tiny(tiny_base, tmp_path / "home")
    seen = dict(calls)
    splits = fictional_splits(0, 2, 10)
    forget = {(r.question, r.answer) for r in splits["forget"]}
    retain_seen = {(r.question, r.answer) for r in seen["finetune retain"]}
    assert forget and not forget & retain_seen
    assert retain_seen == {(r.question, r.answer) for r in splits["retain"]}
    assert seen["finetune target"] == all_finetune_records(0, 2)


def test_interrupted_save_leaves_no_trusted_directory(tiny_base, tmp_path, monkeypatch, no_report):
    home = tmp_path / "home"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were stopped after the weights were written

    monkeypatch.setattr(store, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_tiny(tiny_base, home)
    assert list((home / "models").iterdir()) == []  # no final directory, no staging directory
    monkeypatch.setattr(store, "write_json_atomic", write_json_atomic)

    # A hard kill skips the clean-up: a staging directory and a final-looking one without info stay.
    paths = prepare_tiny(tiny_base, home)
    key = paths.target_info["key"]
    (home / "models" / f".{paths.target.name}.abc123").mkdir()
    (paths.target / setting_models.INFO_FILE).unlink()
    calls = spy_on_finetune(monkeypatch)
    again = prepare_tiny(tiny_base, home)
    assert [desc for desc, _ in calls] == ["finetune target"]  # only the untrusted target is retrained
    assert again.target == paths.target and again.target_info["key"] == key
    assert (paths.target / setting_models.INFO_FILE).is_file()
