"""The shared unlearning loop: what it trains, what it keeps, what it logs, and how it refuses bad input."""

import copy

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.hparams import build_hparams
from e2u.methods import get_method
from e2u.problem import UnlearningProblem
from e2u.unlearning import gradient_ascent
from e2u.unlearning.batches import UnlearningData
from e2u.unlearning.loop import unlearn
from e2u.unlearning.terms import mean_nll

FORGET = [QARecord("what is the capital of France ?", "Paris"), QARecord("what is the capital of Japan ?", "Tokyo"),
          QARecord("who wrote Hamlet ?", "Shakespeare"), QARecord("what is the capital of Spain ?", "Madrid")]
RETAIN = [QARecord("what is the capital of Italy ?", "Rome"), QARecord("what colour is the sky ?", "blue"),
          QARecord("what is the capital of Germany ?", "Berlin"), QARecord("who painted the Mona Lisa ?", "Leonardo"),
          QARecord("what is the capital of Egypt ?", "Cairo"), QARecord("what is the largest ocean ?", "the Pacific")]


def train(name, overrides, model=None, forget=FORGET, retain=RETAIN):
    model, tokenizer = (model, make_tiny_llama()[1]) if model else make_tiny_llama()
    method = get_method(name)
    hp = build_hparams(method.hparams, overrides, name)
    return model, method.apply(model, tokenizer, UnlearningProblem(forget, retain), hp)


def nll(model, records):
    tokenizer = make_tiny_llama()[1]
    data = UnlearningData(tokenizer, records, (), len(records), 0, "cpu")
    with torch.no_grad():
        return mean_nll(model.eval(), data.forget_batch(range(len(records))).answer).item()


def test_one_step_of_gradient_ascent_raises_the_forget_nll():
    for adapter in ("full", "lora"):
        model, _ = make_tiny_llama()
        before = nll(model, FORGET)
        train("gradient_ascent", {"lr": 1e-3, "epochs": 1, "batch_size": 4, "adapter": adapter}, model)
        assert nll(model, FORGET) > before, adapter


def test_gradient_difference_and_kl_keep_the_retain_nll_where_gradient_ascent_alone_does_not():
    """Stated bound: on a tiny model (weights drawn with std 0.2, so that logits can move), 4 epochs at lr 3e-3 on full
    weights, alpha 1, raise the forget NLL by more than 4 nats for each method; the retain NLL rises by less than 2.5
    nats under GD and KL, by more under GA alone (measured: GA +2.9, KL +2.2, GD -3.2: KL's restraint is weak,
    its term being averaged over every position of the retain rows, prompt and padding included)."""
    base, _ = make_tiny_llama(initializer_range=0.2)
    forget_start, retain_start = nll(base, FORGET), nll(base, RETAIN)
    rise = {}
    for name in ("gradient_ascent", "gradient_difference", "kl"):
        model, _ = train(name, {"lr": 3e-3, "epochs": 4, "batch_size": 4, "adapter": "full", "warmup": 0.0},
                         copy.deepcopy(base))
        assert nll(model, FORGET) > forget_start + 4.0, name  # each did unlearn
        rise[name] = nll(model, RETAIN) - retain_start
    assert rise["gradient_ascent"] > 2.5, rise
    assert rise["gradient_difference"] < 2.5 and rise["kl"] < 2.5 and rise["kl"] < rise["gradient_ascent"], rise


def test_rmu_changes_only_the_chosen_blocks():
    model, deltas = train("rmu", {"lr": 1e-3, "epochs": 2, "batch_size": 2, "steer_layer": 2})
    assert set(deltas.norms_by_layer("model.layers")) == {"0", "1", "2"}  # steer_layer - 2 .. steer_layer
    model, deltas = train("rmu", {"lr": 1e-3, "epochs": 2, "batch_size": 2, "steer_layer": 3, "layers": "3"})
    assert set(deltas.norms_by_layer("model.layers")) == {"3"} and deltas.log["steps"] == 4


@pytest.mark.parametrize("name", ["npo", "kl", "rmu"])
def test_the_same_seed_gives_bit_identical_weights(name):
    runs = []
    for _ in range(2):
        model, _ = train(name, {"lr": 1e-3, "epochs": 2, "batch_size": 2, "lora_dropout": 0.1,
                                **({"steer_layer": 2} if name == "rmu" else {})})
        runs.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other, _ = train(name, {"lr": 1e-3, "epochs": 2, "batch_size": 2, "seed": 1,
                            **({"steer_layer": 2} if name == "rmu" else {})})
    assert any(not torch.equal(runs[0][k], v) for k, v in other.state_dict().items())


def test_lora_trains_an_adapter_merged_into_the_dense_weights_and_full_trains_the_weights():
    base, _ = make_tiny_llama()
    lora_model, lora = train("gradient_difference", {"lr": 1e-3, "epochs": 1, "batch_size": 4, "adapter": "lora"})
    full_model, full = train("gradient_difference", {"lr": 1e-3, "epochs": 1, "batch_size": 4, "adapter": "full"})
    assert lora.log["adapter"] == "lora" and lora.log["merged_maps"] == 4 * 7
    assert set(lora_model.state_dict()) == set(base.state_dict())  # no adapter left behind
    assert lora.log["trained_parameters"] < full.log["trained_parameters"] / 4
    assert all("proj" in name for name in lora.deltas)  # LoRA touches only the projections it adapts
    assert any("norm" in name for name in full.deltas)


def test_the_log_has_every_step_each_term_and_the_curve():
    _, deltas = train("gradient_difference", {"lr": 3e-3, "epochs": 3, "batch_size": 2, "curve_points": 3,
                                              "grad_accumulation": 2, "warmup": 0.4},
                      make_tiny_llama(initializer_range=0.2)[0])
    log = deltas.log
    assert log["steps"] == 3 and len(log["step_log"]) == 3  # 2 batches per epoch, 2 per step: 6 / 2
    assert set(log["step_log"][0]) == {"step", "lr", "loss", "forget", "forget_nll", "retain"}
    assert log["step_log"][0]["lr"] < log["step_log"][1]["lr"]  # warm-up (1 step), then decay
    assert log["step_log"][2]["lr"] < log["step_log"][1]["lr"]
    assert [p["step"] for p in log["curve"]] == [0, 1, 2, 3]
    assert log["curve"][-1]["forget_nll"] > log["curve"][0]["forget_nll"]
    assert "retain_nll" in log["curve"][0]


def test_the_reference_with_the_adapter_off_is_the_model_before_unlearning():
    from e2u.training.trainable import only_trainable
    from e2u.unlearning.hparams import UnlearnHParams
    from e2u.unlearning.reference import Reference

    model, tokenizer = make_tiny_llama()
    batch = UnlearningData(tokenizer, FORGET, (), 4, 0, "cpu").forget_batch(range(4)).answer
    before = model(input_ids=batch["input_ids"]).logits
    hp = UnlearnHParams(adapter="lora")
    with only_trainable(model, hp) as params:
        with torch.no_grad():
            for p in params:
                p.add_(0.5)  # the adapted model now differs
        assert not torch.allclose(model(input_ids=batch["input_ids"]).logits, before)
        with Reference(model, UnlearningProblem(FORGET), "lora")() as frozen:
            assert torch.equal(frozen(input_ids=batch["input_ids"]).logits, before)
        assert all(p.requires_grad for p in params)


# ---- bad input ----------------------------------------------------------------------------------------


def test_an_empty_forget_set_is_a_clear_error():
    with pytest.raises(E2UError, match="forget set is empty"):
        train("gradient_difference", {"epochs": 1}, forget=[])


def test_a_retain_set_overlapping_the_forget_set_names_the_questions():
    retain = RETAIN + [QARecord("Who wrote Hamlet ?", "someone")]
    with pytest.raises(E2UError, match=r"1 retain question\(s\) are also in the forget set: 'Who wrote Hamlet \?'"):
        train("npo", {"epochs": 1}, retain=retain)


@pytest.mark.parametrize("field, value, expected", [
    ("lr", 0.5, r"lr: expected a learning rate in \(0, 0.1\]"), ("lr", -1e-5, "lr: expected"),
    ("epochs", 0, r"epochs: expected an integer in \[1, 1000\]"), ("epochs", 5000, "epochs: expected"),
    ("grad_accumulation", 0, "grad_accumulation: expected an integer >= 1")])
def test_out_of_range_settings_are_named(field, value, expected):
    with pytest.raises(E2UError, match="^gradient_difference: " + expected):
        train("gradient_difference", {field: value})


def test_a_loss_that_becomes_nan_stops_the_run_and_keeps_the_last_good_weights():
    model, tokenizer = make_tiny_llama()
    snapshots = []

    def loss(model, forget, retain, reference, hp):
        step = len(snapshots)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        value = gradient_ascent.loss(model, forget, retain, reference, hp)["forget"]
        return {"forget": value * float("nan") if step == 3 else value}

    hp = gradient_ascent.GradientAscentHParams(lr=1e-3, epochs=3, batch_size=2, adapter="full")
    deltas = unlearn(model, tokenizer, UnlearningProblem(FORGET), hp, loss, "exploding")
    assert deltas.log["stopped"] == ("the loss became nan at step 4; training stopped, the weights before step 3 "
                                     "are kept")
    assert deltas.log["steps"] == 3
    kept = model.state_dict()
    assert all(torch.equal(kept[k], snapshots[2][k]) for k in kept)  # the weights step 3's finite loss was taken at
    assert any(not torch.equal(kept[k], snapshots[3][k]) for k in kept)


def test_rmu_refuses_a_block_beyond_the_model():
    with pytest.raises(E2UError, match="steer_layer: expected a block below 4"):
        train("rmu", {"steer_layer": 4})
    with pytest.raises(E2UError, match=r"layers: expected block indices below 4 for this model, got \[2, 9\]"):
        train("gradient_difference", {"layers": "2,9", "epochs": 1})


def test_method_defaults_come_from_the_shared_file_then_the_methods_own():
    from e2u.methods import method_hparams

    model, _ = make_tiny_llama()
    hp = method_hparams("simnpo", model, "smollm2-135m-instruct", {"epochs": 2})
    assert hp.train_layers == 10 and hp.epochs == 2 and hp.forget_coeff == 0.125
    paper = method_hparams("dpo", model, "llama-2-7b-chat", {})
    assert (paper.lr, paper.epochs, paper.batch_size, paper.adapter, paper.lora_r, paper.train_layers, paper.warmup,
            paper.weight_decay, paper.beta) == (1e-5, 20, 4, "lora", 8, 0, 0.1, 0.01, 0.1)


def test_each_forget_item_gets_a_seeded_retain_partner_that_changes_between_epochs():
    from e2u.data.refusals import REFUSALS

    tokenizer = make_tiny_llama()[1]
    data = UnlearningData(tokenizer, FORGET, RETAIN, 2, 3, "cpu")
    again = UnlearningData(tokenizer, FORGET, RETAIN, 2, 3, "cpu")
    partners = [[data.partner(epoch, i) for i in range(4)] for epoch in range(6)]
    assert partners == [[again.partner(epoch, i) for i in range(4)] for epoch in range(6)]
    assert all(0 <= p < len(RETAIN) for row in partners for p in row)
    assert len({tuple(row) for row in partners}) > 1  # a fresh partner each epoch
    seen = [forget.items for forget, _ in data.batches(0)]
    assert sorted(i for items in seen for i in items) == [0, 1, 2, 3]  # every forget item once per epoch
    refusals = {tokenizer.decode(r[:-1]) for r in data.refusals}
    assert refusals <= {tokenizer.decode(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in REFUSALS}
