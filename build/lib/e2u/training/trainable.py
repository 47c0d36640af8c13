"""What a gradient-trained procedure trains, and how its optimiser steps: shared by finetuning and unlearning.

Two ways to train (`adapter`): the chosen weights themselves (`full`: the top `train_layers` decoder blocks and
the final norm, or the blocks listed in `layers`), or a LoRA adapter on those blocks' projections (`lora`,
Hu et al. 2021; `lora.py`), folded into the dense weights at the end so that the model keeps its class and
state-dict keys. The optimiser is AdamW without decay on norms and biases (as HF Trainer), with a linear
warm-up over the first `warmup` fraction of the steps and a linear decay to 0 after.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from e2u.errors import E2UError
from e2u.hparams import TrainingHParams, real_number, whole_number
from e2u.model.arch import find_arch
from e2u.training import lora

ADAPTERS = ("full", "lora")


@dataclass
class TrainableHParams(TrainingHParams):
    """`TrainingHParams` plus what trains and the learning-rate schedule."""
    warmup: float = 0.1  # fraction of the steps with a linear warm-up; then linear decay to 0
    train_layers: int = 0  # train only the top N decoder blocks (and the final norm); 0 = every block
    layers: str = ""  # comma-separated block indices to train instead of the top `train_layers` ("5,6,7")
    train_embeddings: bool = False  # also train the input and output embeddings (tied or not)
    adapter: str = "full"  # "full": the chosen weights train; "lora": a LoRA adapter on them trains, then merges
    lora_r: int = 8  # LoRA rank (the PISTOL harness's value)
    lora_alpha: float = 32.0  # LoRA scale alpha: the update is (alpha / r) B A
    lora_dropout: float = 0.05  # dropout on the adapter's input
    lora_targets: str = ""  # comma-separated projection names ("q_proj,v_proj"); empty: every block projection

    ALIASES = {**TrainingHParams.ALIASES, "warmup_ratio": "warmup"}

    def extra_rules(self) -> dict:
        return {"warmup": (lambda v: real_number(v) and 0 <= v < 1, "a fraction of the steps in [0, 1)"),
                "train_layers": (lambda v: whole_number(v) and v >= 0, "an integer >= 0 (0 trains every block)"),
                "layers": (lambda v: isinstance(v, str) and all(p.strip().isdigit() for p in v.split(",") if p.strip()),
                           "comma-separated block indices, or empty"),
                "train_embeddings": (lambda v: isinstance(v, bool), "true or false"),
                "adapter": (lambda v: v in ADAPTERS, f"one of {list(ADAPTERS)}"),
                "lora_r": (lambda v: whole_number(v) and v >= 1, "an integer >= 1"),
                "lora_alpha": (lambda v: real_number(v) and v > 0, "a positive number"),
                "lora_dropout": (lambda v: real_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
                "lora_targets": (lambda v: isinstance(v, str), "comma-separated projection names, or empty for all")}


def trained_blocks(model: nn.Module, hp: TrainableHParams) -> list[int]:
    """The decoder blocks `hp` trains: `layers` if given, else the top `train_layers` (0: all), checked."""
    n_layers = find_arch(model).n_layers
    where = type(hp).__name__
    if hp.layers.strip():
        blocks = sorted({int(p) for p in hp.layers.split(",") if p.strip()})
        if blocks[-1] >= n_layers:
            raise E2UError(f"{where}: layers: expected block indices below {n_layers} for this model, got {blocks}")
        return blocks
    if hp.train_layers > n_layers:
        raise E2UError(f"{where}: train_layers: expected at most {n_layers} for this model, got {hp.train_layers}")
    return list(range(0 if hp.train_layers == 0 else n_layers - hp.train_layers, n_layers))


def first_trained_block(model: nn.Module, hp: TrainableHParams) -> int:
    """Index of the lowest block that `hp` trains (0 when the embeddings or every block train)."""
    return 0 if hp.train_embeddings else trained_blocks(model, hp)[0]


def trainable_parameters(model: nn.Module, hp: TrainableHParams) -> list[nn.Parameter]:
    """Set requires_grad as `hp` says (the trained blocks, the final norm when the top blocks train, embeddings if
    asked; with `adapter: lora`, a LoRA adapter attached to those blocks' projections instead); return them."""
    arch = find_arch(model)
    blocks = trained_blocks(model, hp)
    if hp.adapter == "lora":
        if hp.train_embeddings:
            raise E2UError(f"{type(hp).__name__}: train_embeddings: expected false with adapter 'lora' (the adapter "
                           "trains the block projections only), got true")
        targets = [t.strip() for t in hp.lora_targets.split(",") if t.strip()]
        return lora.attach(model, hp.lora_r, hp.lora_alpha, hp.lora_dropout, targets, blocks, hp.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [model.get_submodule(arch.layer_path(i)) for i in blocks]
    if not hp.layers.strip():
        modules.append(model.get_submodule(arch.final_norm))
    if hp.train_embeddings:
        modules += [model.get_input_embeddings(), model.get_output_embeddings()]
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
    return list(dict.fromkeys(p for p in model.parameters() if p.requires_grad))


@contextmanager
def only_trainable(model: nn.Module, hp: TrainableHParams) -> Iterator[list[nn.Parameter]]:
    """Only `hp`'s parameters require grad meanwhile; after, each as before, and the model in eval mode. An
    adapter still attached when the block ends (a failed run) is dropped: the base weights stay as they were."""
    previous = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        yield trainable_parameters(model, hp)
    finally:
        if hp.adapter == "lora":

            lora.merge(model, fold=False)
        for name, p in model.named_parameters():
            if name in previous:
                p.requires_grad_(previous[name])
        model.eval()


def merge_adapter(model: nn.Module, hp: TrainableHParams) -> dict:
    """With `adapter: lora`, the adapter folded into the dense weights (`lora.merge`); what the log says of it."""
    if hp.adapter != "lora":
        return {"adapter": "full"}

    return {"adapter": "lora", "lora_r": hp.lora_r, "lora_alpha": hp.lora_alpha, "merged_maps": lora.merge(model)}


def adamw_with_schedule(params: list[nn.Parameter], hp: TrainableHParams, total: int):
    """AdamW without decay on <2-D parameters (norms, biases; as HF Trainer), and its warm-up/decay schedule:
    the factor (s + 1) / (w + 1) for steps s < w = floor(warmup * total), then (total - s) / (total - w)."""
    optimiser = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": hp.weight_decay},
                                   {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=hp.lr)
    warmup = int(hp.warmup * total)
    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: (
        (step + 1) / (warmup + 1) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))))


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global random state (dropout, LoRA's initialisation) seeded meanwhile, and restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
