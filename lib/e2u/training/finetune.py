"""Supervised finetuning on (question, answer) records: TOFU's finetuning (Maini et al. 2024).

Each record is rendered exactly as evaluation renders it (`prompts.question_ids`, then
`prompts.encode_answer`: answer + EOS) and only the answer tokens are learned (TOFU's masked labels).
`finetune` is the plain loop: AdamW (no decay on norms and biases), linear warm-up then linear decay,
gradient clipping, length-bucketed batches padded per batch. How a batch's loss is computed is its
`loss` argument: the CPU shortcuts of `finetune_shortcuts` by default (same numbers, faster), or
`answer_loss`, the textbook full forward pass. What trains is `adapter`'s: the chosen weights themselves
(`full`, TOFU), or a LoRA adapter on the chosen blocks' projections, merged into them at the end (`lora`,
the PISTOL harness; `lora.py`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from e2u.errors import E2UError
from e2u.hparams import build_hparams
from e2u.model.batching import IGNORE
from e2u.model.load import input_device
from e2u.training import shortcuts
from e2u.training.examples import Example, example_batch, examples_of
from e2u.training.trainable import (
    TrainableHParams,
    adamw_with_schedule,
    first_trained_block,
    merge_adapter,
    only_trainable,
    seeded,
)

# Bump when the training procedure changes what a saved model would contain: old caches stop matching.
FINETUNE_VERSION = 1


@dataclass
class FinetuneHParams(TrainableHParams):
    """Supervised finetuning settings (what trains and the schedule: `trainable.TrainableHParams`). Defaults
    are tuned for the embedded model on a CPU: on SmolLM2-135M (top 6 of 30 blocks trained) greedy answers to
    200 fictional training questions reach ROUGE-L recall 0.91 after 3 epochs and 0.96-0.98 after 5 (about
    40 s per epoch at 1 thread).

    TOFU's own setting (Llama-2-7b-chat: lr 1e-5, 5 epochs, effective batch 32, weight decay 0.01,
    one warm-up epoch, every weight trained) is `TOFU_HPARAMS`; it needs a GPU.
    """
    lr: float = 1e-3  # AdamW peak learning rate
    epochs: int = 5  # passes over the records
    batch_size: int = 8  # records per optimiser step
    train_layers: int = 6  # train only the top N decoder blocks and the final norm; 0 = every block

    def to_dict(self) -> dict:
        """The fields, as the finetuned models' cache keys hash them: `layers` only when set (it came later;
        models trained before it stay valid)."""
        values = dataclasses.asdict(self)
        if not values["layers"]:
            del values["layers"]
        return values


TOFU_HPARAMS = MappingProxyType({"lr": 1e-5, "epochs": 5, "batch_size": 32, "weight_decay": 0.01, "warmup": 0.2,
                                 "train_layers": 0, "train_embeddings": True})
# The PISTOL harness's finetuning of its 7B models (README: lr 2e-5 for Llama-2, 1e-5 for Mistral): LoRA on every
# block's projections, merged; it needs a GPU.
PISTOL_LORA_HPARAMS = MappingProxyType({"adapter": "lora", "lora_r": 8, "lora_alpha": 32.0, "lora_dropout": 0.05,
                                        "lr": 2e-5, "epochs": 20, "batch_size": 16, "train_layers": 0})
# The same adapter sized for the embedded model on 2 CPU cores (the `pistol` source's default): on every block's
# projections as the harness puts it, with a higher learning rate and fewer epochs. Measured by `bench/lora_bench.py`
# on the default PISTOL graph (140 records, 1 thread, ROUGE-L recall of 40 training answers of each split, greedy):
#   every block, lr 5e-3, 12 epochs: recall 0.75 (forget) / 0.90 (retain), final loss 0.14; 2,835 s on a machine
#     shared with other runs (about four times the top-10 adapter's cost);
#   top 10 of 30 blocks (the embedded default until issue 34), lr 5e-3, 12 epochs: 226 s, recall 0.96 / 1.00.
# The top-10 adapter put the finetuned facts above the blocks ROME, MEMIT and AlphaEdit edit (4-8), so a gap between
# the settings could measure where the facts were put; every block is what PISTOL does.
EMBEDDED_LORA_HPARAMS = MappingProxyType({"adapter": "lora", "lora_r": 8, "lora_alpha": 32.0, "lora_dropout": 0.05,
                                          "lr": 5e-3, "epochs": 12, "batch_size": 8, "train_layers": 0})


def finetune_hparams(values: Mapping[str, Any] | FinetuneHParams | None = None) -> FinetuneHParams:
    """Checked hyper-parameters from a dataclass, a dict of overrides (unknown keys are an error) or None."""
    if values is None:
        return FinetuneHParams().check()
    if isinstance(values, FinetuneHParams):
        return dataclasses.replace(values).check()
    if not isinstance(values, Mapping):
        raise E2UError(f"finetune hparams: expected a mapping of overrides, got {type(values).__name__}")
    return build_hparams(FinetuneHParams, dict(values), "finetune")


# ---- batches -----------------------------------------------------------------------------------------


def length_buckets(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (sorted, random among equal lengths), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def answer_loss(model: nn.Module, batch: Mapping[str, torch.Tensor], examples: Sequence[Example] = ()) -> torch.Tensor:
    """Mean NLL of the answer tokens (TOFU's masked labels: the question is not learned); full forward."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    labels = batch["labels"][:, 1:]
    return nn.functional.cross_entropy(logits[:, :-1][labels != IGNORE].float(), labels[labels != IGNORE])


# ---- the loop ---------------------------------------------------------------------------------------

BatchLoss = Callable[[nn.Module, Mapping[str, torch.Tensor], Sequence[Example]], torch.Tensor]


def finetune(
    model: nn.Module, tokenizer, records: Sequence, hp: FinetuneHParams | Mapping | None = None, *,
    desc: str = "finetune", loss: BatchLoss | None = None, reuse_frozen: bool = True, states=None,
    on_epoch: Callable[[int], dict | None] | None = None,
) -> dict:
    """Supervised finetuning on (question, answer) records (TOFU's finetuning; Maini et al. 2024).

    The model changes in place and is left in eval mode with every parameter's requires_grad as before; with
    `adapter: lora` only the adapter trains, and it is merged into the dense weights before returning (the
    model keeps its class and state-dict keys; a failed run leaves the base weights unchanged).
    `loss(model, batch, examples)` gives a batch's loss; None: `shortcuts.shortcut_loss`, which
    with `reuse_frozen` (False: every step from the token ids) starts from the frozen blocks' stored
    output (`states`, shared between runs). `on_epoch(epoch)` runs after each epoch in eval mode; what it
    returns is logged under `epoch_report`. Returns a log: losses per step and epoch, `final_loss`, seconds
    (without `on_epoch`'s), steps, tokens, the trained parameters, the adapter (with LoRA: r, alpha, merged maps).
    """
    hp = finetune_hparams(hp)
    if not records:
        raise E2UError("finetune: no records to train on")
    examples = examples_of(tokenizer, records)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = input_device(model)
    started = time.perf_counter()
    losses, epoch_losses, reports, tokens, paused = [], [], [], 0, 0.0
    first = first_trained_block(model, hp)
    with only_trainable(model, hp) as params:
        if loss is None:
            loss = shortcuts.shortcut_loss(model, examples, first, pad_id, hp.batch_size, reuse_frozen,
                                                    states)
        total = math.ceil(len(examples) / hp.batch_size) * hp.epochs
        optimiser, schedule = adamw_with_schedule(params, hp, total)
        rng = random.Random(hp.seed)
        with seeded(hp.seed, device), tqdm(total=total, desc=desc, leave=False, disable=None) as bar:
            model.train()
            for epoch in range(1, hp.epochs + 1):
                epoch_loss = []
                for indices in length_buckets([e.length for e in examples], hp.batch_size, rng):
                    chosen = [examples[i] for i in indices]
                    batch = example_batch(chosen, pad_id, device)
                    value = loss(model, batch, chosen)
                    optimiser.zero_grad(set_to_none=True)
                    value.backward()
                    if hp.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                    optimiser.step()
                    schedule.step()
                    epoch_loss.append(_finite(value.item(), len(losses) + 1, hp))
                    losses.append(round(epoch_loss[-1], 4))
                    tokens += int(batch["attention_mask"].sum())
                    bar.update(1)
                    bar.set_postfix(loss=f"{epoch_loss[-1]:.3f}")
                epoch_losses.append(round(sum(epoch_loss) / len(epoch_loss), 4))
                if on_epoch is not None:
                    paused += _run_callback(model, on_epoch, epoch, reports)
        trained = sum(p.numel() for p in params)
        merged = merge_adapter(model, hp)
    return {"loss": losses, "epoch_loss": epoch_losses, "final_loss": epoch_losses[-1], "steps": len(losses),
            "tokens": tokens, **({"epoch_report": reports, "callback_seconds": round(paused, 2)} if on_epoch else {}),
            "seconds": round(time.perf_counter() - started - paused, 2), "records": len(examples),
            "trained_parameters": trained, "first_trained_block": first, **merged,
            **shortcuts.describe(loss)}


def _finite(value: float, step: int, hp: FinetuneHParams) -> float:
    if not math.isfinite(value):
        raise E2UError(f"finetune: the loss became {value} at step {step}; lower lr (now {hp.lr})")
    return value


def _run_callback(model: nn.Module, on_epoch, epoch: int, reports: list) -> float:
    """Call `on_epoch(epoch)` in eval mode without gradients; log its report; return its seconds."""
    paused = time.perf_counter()
    model.eval()
    with torch.no_grad():
        reports.append({"epoch": epoch, **(on_epoch(epoch) or {})})
    model.train()
    return time.perf_counter() - paused
