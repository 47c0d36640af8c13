"""LoRA finetuning (peft, as the PISTOL harness trains): the adapter, its merge, and the loop's `adapter: lora`."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.training import finetune as ft
from e2u.training import lora

RECORDS = [QARecord(question=f"What is code {i}?", answer=f"Code {i} is {i * 7 % 13}.") for i in range(12)]
LORA = {"adapter": "lora", "lr": 1e-2, "epochs": 2, "batch_size": 4, "train_layers": 2, "lora_dropout": 0.0}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_attach_adds_trainable_parameters_only_to_the_targeted_projections_of_the_chosen_blocks():
    model, _ = make_tiny_llama()
    params = lora.attach(model, r=4, alpha=8, dropout=0.0, targets=["q_proj", "down_proj"], layers=[2, 3], seed=0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(params) == len(names) == 2 * 2 * 2  # (A, B) x 2 projections x 2 blocks
    assert all(".layers.2." in n or ".layers.3." in n for n in names)
    assert all(("q_proj" in n or "down_proj" in n) and "lora_" in n for n in names)


def test_the_adapted_model_starts_as_the_base_model_and_merging_keeps_what_it_computes():
    model, _ = make_tiny_llama()
    base = make_tiny_llama()[0]
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    before = _logits(model, ids)
    params = lora.attach(model, r=4, alpha=16, dropout=0.0, targets=None, layers=[0, 1, 2, 3], seed=0)
    assert torch.equal(_logits(model, ids), before)  # B = 0 at the start
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    adapted = _logits(model, ids)
    assert not torch.allclose(adapted, before)
    assert lora.merge(model) == 4 * len(lora.projection_names(model))
    assert type(model) is type(base) and list(model.state_dict()) == list(base.state_dict())
    assert not any("lora" in n for n, _ in model.named_modules())
    torch.testing.assert_close(_logits(model, ids), adapted, atol=1e-5, rtol=1e-5)


def test_lora_finetuning_changes_only_the_targeted_weights_and_is_reproducible():
    model, tokenizer = make_tiny_llama()
    original = {n: p.detach().clone() for n, p in model.state_dict().items()}
    log = ft.finetune(model, tokenizer, RECORDS, {**LORA, "lora_targets": "q_proj,v_proj"})
    assert log["adapter"] == "lora" and log["merged_maps"] == 2 * 2
    assert log["trained_parameters"] == 2 * 8 * ((64 + 64) + (64 + 32))  # 2 blocks x r 8 x (in + out) of q and v
    changed = sorted(n for n, p in model.state_dict().items() if not torch.equal(p, original[n]))
    assert changed == sorted(f"model.layers.{i}.self_attn.{m}.weight" for i in (2, 3) for m in ("q_proj", "v_proj"))
    assert all(p.requires_grad for p in model.parameters())  # restored as they were before training
    again, _ = make_tiny_llama()
    ft.finetune(again, tokenizer, RECORDS, {**LORA, "lora_targets": "q_proj,v_proj"})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_after_training_the_merged_model_is_the_plain_model_computing_what_the_adapted_one_did():
    model, tokenizer = make_tiny_llama()
    base = make_tiny_llama()[0]
    ids = torch.tensor([[1, 5, 9, 12, 3, 7]])
    seen = {}

    def last_epoch(epoch):  # runs in eval mode with the adapter still attached, before the merge
        if epoch == LORA["epochs"]:
            seen["adapted"] = _logits(model, ids)

    log = ft.finetune(model, tokenizer, RECORDS, {**LORA, "lora_dropout": 0.05}, on_epoch=last_epoch)
    assert log["merged_maps"] == 2 * 7 and not torch.allclose(seen["adapted"], _logits(base, ids))  # it trained
    assert type(model) is type(base) and list(model.state_dict()) == list(base.state_dict())
    assert not any("lora" in n for n, _ in model.named_parameters()) and not hasattr(model, "peft_config")
    assert [type(m) for m in model.modules()] == [type(m) for m in base.modules()]
    torch.testing.assert_close(_logits(model, ids), seen["adapted"], atol=1e-5, rtol=1e-5)


def test_the_default_targets_are_the_blocks_attention_and_mlp_projections():
    model, _ = make_tiny_llama()
    assert lora.projection_names(model) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"])


def test_a_failed_lora_run_leaves_the_base_model_as_it_was(monkeypatch):
    model, tokenizer = make_tiny_llama()
    original = {n: p.detach().clone() for n, p in model.state_dict().items()}
    with pytest.raises(E2UError, match="loss became nan"):
        ft.finetune(model, tokenizer, RECORDS, LORA, loss=lambda m, batch, examples: (
            ft.answer_loss(m, batch) * float("nan")))
    assert list(model.state_dict()) == list(original) and not hasattr(model, "peft_config")
    assert all(torch.equal(p, original[n]) for n, p in model.state_dict().items())


def test_lora_finetuning_lowers_the_training_loss():
    model, tokenizer = make_tiny_llama()
    log = ft.finetune(model, tokenizer, RECORDS, {**LORA, "epochs": 4, "train_layers": 0})
    assert log["epoch_loss"][-1] < log["epoch_loss"][0]


@pytest.mark.parametrize("bad, message", [
    ({"adapter": "qlora"}, r"adapter: expected one of \['full', 'lora'\]"),
    ({"adapter": "lora", "lora_r": 0}, "lora_r: expected an integer >= 1"),
    ({"adapter": "lora", "lora_dropout": 1.5}, r"lora_dropout: expected a probability in \[0, 1\)"),
])
def test_bad_lora_hyper_parameters_name_the_field(bad, message):
    with pytest.raises(E2UError, match=message):
        ft.finetune_hparams(bad)


def test_an_unknown_target_module_lists_the_projections_there_are():
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match=r"lora_targets \['c_attn'\].*expected some of \[.*q_proj"):
        ft.finetune(model, tokenizer, RECORDS, {**LORA, "lora_targets": "c_attn"})
