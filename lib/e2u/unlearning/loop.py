"""The training loop every unlearning loss shares: forget batches, an optimiser, a log.

A method supplies `forget_loss(model, batch)`; the loop tokenises (question, answer) pairs with
the same chat rendering that evaluation uses, masks the question out of the labels (TOFU's
`mask=true`), and runs AdamW for the given epochs over the forget set (closer-look / TOFU
defaults: lr 1e-5, weight decay 0.01, 5 epochs). It returns the weight changes it made.

A model in bf16 (or fp16) is trained with float32 master copies of its parameters: the forward and
backward passes run in the model's dtype, AdamW steps the float32 copies, which are rounded into
the model after each step. Stepping bf16 weights directly would lose most updates: at lr 1e-5 an
Adam step is below half a bf16 ulp of a typical weight, so it rounds to nothing.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from ..batching import prompt_answer_batch
from ..hparams import TrainingHParams
from ..models import input_device
from ..prompts import encode_answer, question_ids
from ..result import WeightDeltas

log = logging.getLogger(__name__)


def qa_batch(tokenizer, pairs: list[tuple[str, str]], device) -> dict[str, torch.Tensor]:
    """Right-padded (question, answer + EOS) batch whose labels cover the answer tokens only."""
    prompts = [question_ids(tokenizer, q) for q, _ in pairs]
    answers = [encode_answer(tokenizer, a) for _, a in pairs]
    return prompt_answer_batch(prompts, answers, tokenizer.pad_token_id, device)


def answer_nll(model, batch: dict) -> torch.Tensor:
    """Mean NLL of the answer tokens, the LM head run only where an answer token is predicted.

    Equal to `model(**batch).loss` (HF's shifted cross-entropy over labels != -100) to float rounding;
    the vocabulary projection and its softmax skip the prompt's positions (bench/unlearning_bench.py)."""
    from ..finetune_shortcuts import answer_logits

    logits, targets = answer_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def changes_since(model, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The change of every parameter that moved since `before` (a CPU snapshot), in its stored layout."""
    changes = {name: p.detach().cpu().float() - before[name].float() for name, p in model.named_parameters()}
    return {name: change for name, change in changes.items() if change.any()}


class MasterWeights:
    """The parameters AdamW steps: the model's own when they are float32 (or float64), float32 copies
    of them when they are half precision (then gradients are copied in and the steps copied back)."""

    def __init__(self, model):
        self.pairs = []  # (model parameter, its float32 master or itself)
        for p in model.parameters():
            if not p.requires_grad:
                continue
            master = p.detach().float().requires_grad_(True) if p.dtype in (torch.bfloat16, torch.float16) else p
            self.pairs.append((p, master))
        self.parameters = [master for _, master in self.pairs]

    def take_gradients(self) -> None:
        for p, master in self.pairs:
            if master is not p:
                master.grad = None if p.grad is None else p.grad.float()
                p.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        for p, master in self.pairs:
            if master is not p:
                p.copy_(master)


def train_on_forget(model, tokenizer, pairs: list[tuple[str, str]], hp: TrainingHParams,
                    forget_loss: Callable[[torch.nn.Module, dict], torch.Tensor], name: str) -> WeightDeltas:
    """Run AdamW over shuffled forget batches; the model changes in place."""
    hp.check()
    device = input_device(model)
    before = {name_: p.detach().cpu().clone() for name_, p in model.named_parameters()}
    masters = MasterWeights(model)
    optimiser = torch.optim.AdamW(masters.parameters, lr=hp.lr, weight_decay=hp.weight_decay)
    order = list(range(len(pairs)))
    rng = random.Random(hp.seed)
    losses = []
    started = time.perf_counter()
    model.train()
    steps = hp.epochs * ((len(pairs) + hp.batch_size - 1) // hp.batch_size)
    with tqdm(total=steps, desc=name, leave=False, disable=None) as bar:
        for _ in range(hp.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), hp.batch_size):
                batch = qa_batch(tokenizer, [pairs[i] for i in order[start : start + hp.batch_size]], device)
                loss = forget_loss(model, batch)
                optimiser.zero_grad()
                model.zero_grad(set_to_none=True)
                loss.backward()
                masters.take_gradients()
                if hp.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(masters.parameters, hp.max_grad_norm)
                optimiser.step()
                masters.write_back()
                losses.append(round(loss.item(), 4))
                bar.update(1)
    model.eval()
    return WeightDeltas(changes_since(model, before), {"method": name, "loss": losses, "steps": len(losses),
                                                       "seconds": round(time.perf_counter() - started, 2)})
