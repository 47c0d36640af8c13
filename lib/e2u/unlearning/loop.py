"""The training loop every unlearning baseline shares.

A method is one loss function `loss(model, forget, retain, reference, hp) -> {term: tensor}` (`batches.py`: a
forget batch with its true answers and refusals, the paired retain batch or None; `reference.py`: the frozen model
before unlearning, built only if asked). The loop minimises

    L = forget_coeff * terms["forget"] + retain_coeff * terms["retain"]

(the other terms a loss returns are logged, not trained on) with AdamW, a linear warm-up over `warmup` of the
steps then linear decay, `grad_accumulation` micro-batches per step, gradient clipping, on a LoRA adapter merged
at the end or on the chosen weights (`trainable.py`). It logs every step's terms, measures the forget-vs-keep
curve (`curve.py`), and is deterministic on a CPU for a seed (batch order, retain partners, refusals, dropout and
LoRA's initialisation all derive from `hp.seed`). A loss or gradient that stops being finite ends the run at
that step, keeps the weights of the last step whose loss was finite, and says so in the log (`stopped`).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from typing import Callable

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from e2u.errors import E2UError
from e2u.model.load import input_device
from e2u.result import WeightDeltas
from e2u.training.frozen_blocks import frozen_lower_blocks
from e2u.training.master_weights import MasterWeights
from e2u.training.trainable import adamw_with_schedule, first_trained_block, merge_adapter, only_trainable, seeded
from e2u.unlearning.batches import UnlearningData
from e2u.unlearning.curve import Curve
from e2u.unlearning.hparams import UnlearnHParams
from e2u.unlearning.reference import Reference

log = logging.getLogger(__name__)

Loss = Callable[..., dict[str, torch.Tensor]]


def training_method(loss: Loss, name: str):
    """The `apply(model, tokenizer, problem, hp)` of a baseline defined by its loss."""
    def apply(model, tokenizer, problem, hp: UnlearnHParams) -> WeightDeltas:
        return unlearn(model, tokenizer, problem, hp, loss, name)

    apply.__doc__ = f"Unlearn the problem's forget set with {name}'s loss."
    return apply


def changeable(model) -> dict[str, torch.Tensor]:
    """A CPU copy of every weight training can change, by its name once any adapter is merged: the parameters that
    require grad, or the base weights under a LoRA adapter (peft names them `<module>.base_layer.weight`)."""
    out = {}
    for name, p in model.named_parameters():
        if ".base_layer." in name:
            out[name.replace(".base_layer.", ".")] = p.detach().cpu().clone()
        elif p.requires_grad and "lora_" not in name:
            out[name] = p.detach().cpu().clone()
    return out


def changes_since(model, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The change of every parameter in `before` (a CPU snapshot) that moved, in its stored layout."""
    params = dict(model.named_parameters())
    changes = {name: params[name].detach().cpu().float() - old.float() for name, old in before.items()}
    return {name: change for name, change in changes.items() if change.any()}


def combined(terms: dict[str, torch.Tensor], hp: UnlearnHParams) -> torch.Tensor:
    """L = forget_coeff * forget + retain_coeff * retain (a term the loss did not return counts 0)."""
    total = hp.forget_coeff * terms["forget"]
    if "retain" in terms and hp.retain_coeff:
        total = total + hp.retain_coeff * terms["retain"]
    return total


def unlearn(model, tokenizer, problem, hp: UnlearnHParams, loss: Loss, name: str,
            reuse_frozen: bool = True) -> WeightDeltas:
    """Train `model` in place on `loss` over the problem's forget (and retain) items; return the weight changes.
    With `reuse_frozen`, the blocks below the lowest trained one run once per row (`frozen_blocks.py`)."""
    try:
        hp.check()
    except E2UError as error:
        raise E2UError(f"{name}: {error}") from None
    device = input_device(model)
    data = UnlearningData(tokenizer, problem.forget, problem.retain, hp.batch_size, hp.seed, device)
    micro_steps = data.batches_per_epoch() * hp.epochs
    total = math.ceil(micro_steps / hp.grad_accumulation)
    started = time.perf_counter()
    store, not_reused = (frozen_lower_blocks(model, first_trained_block(model, hp), data.pad_id, data.rows(),
                                             data.forget_batch(range(min(hp.batch_size, data.n_forget))).answer)
                         if reuse_frozen else (None, "switched off"))
    step_log, losses, stopped = [], [], None
    with seeded(hp.seed, device), only_trainable(model, hp) as params, (store.used() if store else nullcontext()):
        before = changeable(model)
        masters = MasterWeights(params)
        optimiser, schedule = adamw_with_schedule(masters.parameters, hp, total)
        reference = Reference(model, problem, hp.adapter)
        curve = Curve(data, hp.curve_points, hp.curve_items, total)
        curve.measure(model, 0)
        model.train()
        pending: list[dict[str, float]] = []
        last_good = None  # the trainable weights before the last step, whose loss was finite
        with tqdm(total=total, desc=name, leave=False, disable=None) as bar:
            for micro, (forget, retain) in enumerate(_micro_batches(data, hp.epochs), start=1):
                terms = loss(model, forget, retain, reference, hp)
                value = combined(terms, hp)
                step = len(step_log) + 1
                if not math.isfinite(value.item()):
                    stopped = _stop(masters, last_good, f"the loss became {value.item()}", step)
                    break
                (value / hp.grad_accumulation).backward()
                pending.append({"loss": value.item(), **{k: t.item() for k, t in terms.items()}})
                if micro % hp.grad_accumulation and micro < micro_steps:
                    continue
                masters.take_gradients()
                norm = torch.nn.utils.clip_grad_norm_(masters.parameters, hp.max_grad_norm or float("inf"))
                if not math.isfinite(norm.item()):
                    stopped = _stop(masters, None, f"the gradient norm became {norm.item()}", step)
                    break
                last_good = masters.snapshot()
                lr = optimiser.param_groups[0]["lr"]
                optimiser.step()
                schedule.step()
                masters.write_back()
                optimiser.zero_grad(set_to_none=True)
                model.zero_grad(set_to_none=True)
                reference.stepped = True
                entry = {"step": step, "lr": lr,
                         **{k: round(sum(p[k] for p in pending) / len(pending), 5) for k in pending[0]}}
                step_log.append(entry)
                losses.append(round(entry["loss"], 4))
                pending = []
                curve.measure(model, step)
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
        trained = sum(p.numel() for p in params)
        merged = merge_adapter(model, hp)
    return WeightDeltas(changes_since(model, before), {
        "method": name, "loss": losses, "steps": len(step_log), "step_log": step_log, "curve": curve.points,
        "seconds": round(time.perf_counter() - started, 2), "trained_parameters": trained, **merged,
        "reference": ("the model with its adapter off" if hp.adapter == "lora" else "a frozen copy")
        if reference.used else None, "forget_items": data.n_forget,
        "frozen_lower_blocks": store.describe() if store else {"not reused": not_reused}, "retain_items": len(data.retain_prompts),
        **({"stopped": stopped} if stopped else {})})


def _micro_batches(data: UnlearningData, epochs: int):
    for epoch in range(epochs):
        yield from data.batches(epoch)


def _stop(masters: MasterWeights, last_good, why: str, step: int) -> str:
    """End the run at `step`: restore `last_good` (the weights of the last step whose loss was finite; None: the
    current ones are); return the message the log keeps."""
    if last_good is not None:
        masters.restore(last_good)
    kept = f"the weights before step {step - 1}" if last_good is not None else f"the weights before step {step}"
    message = f"{why} at step {step}; training stopped, {kept} are kept"
    log.warning(message)
    return message
