"""A LoRA adapter for the finetuning loop: W x + (alpha / r) B A x on chosen projections, then merged.

LoRA (Hu et al. 2021): each targeted linear map W gains a trainable low-rank update B A (A: r x in, B: out x r,
B = 0 at the start, so the adapted model begins as the base model), scaled by alpha / r. The PISTOL harness
finetunes its knowledge graph this way (peft: r 8, alpha 32, dropout 0.05 on q, k, v, o, gate, up, down) and
merges the adapter (`merge_and_unload`), so that editors see a dense model. Here the adapter is injected into
the model object itself (`peft.inject_adapter_in_model`, no wrapper), and `merge` folds W + (alpha/r) B A back
into each original `nn.Linear`, leaving the model's class, modules and state-dict keys as they were.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from e2u.errors import E2UError
from e2u.model.arch import find_arch, projection_shape


def projection_names(model: nn.Module) -> list[str]:
    """The names of the linear maps inside a decoder block, found from the model (Llama: q_proj, k_proj, v_proj,
    o_proj, gate_proj, up_proj, down_proj; GPT-2's Conv1D maps too): the adapter's default targets."""
    block = model.get_submodule(find_arch(model).layer_path(0))
    return sorted({name.rsplit(".", 1)[-1] for name, m in block.named_modules() if projection_shape(m) is not None})


def attach(model: nn.Module, r: int, alpha: float, dropout: float, targets: list[str] | None, layers: list[int],
           seed: int) -> list[nn.Parameter]:
    """Inject a LoRA adapter into `targets` (default `projection_names`) of decoder blocks `layers`, seeded;
    return its trainable parameters (A and B of every targeted map), the only ones that require grad."""
    available = projection_names(model)
    targets = list(targets or available)
    unknown = sorted(set(targets) - set(available))
    if unknown:
        raise E2UError(f"finetune hparams: lora_targets {unknown} are not projections of this model's blocks; "
                       f"expected some of {available}")
    arch = find_arch(model)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                        layers_to_transform=sorted(layers), layers_pattern=arch.layers.rsplit(".", 1)[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for name, p in model.named_parameters() if "lora_" in name]
    for p in params:
        p.requires_grad_(True)
    return params


def merge(model: nn.Module, fold: bool = True) -> int:
    """Fold every LoRA layer into its base `nn.Linear` (W <- W + (alpha / r) B A) and put the base layer back in
    its place; returns how many maps were merged. No adapter parameter or module remains. `fold=False` discards
    the adapter instead (the base weights as they were: what a failed run leaves)."""
    adapted = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in adapted:
        if fold:
            module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    vars(model).pop("peft_config", None)  # what `inject_adapter_in_model` left on the model: nothing of peft stays
    return len(adapted)
