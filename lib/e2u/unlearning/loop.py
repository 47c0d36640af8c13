"""The training loop every unlearning loss shares: forget batches, an optimiser, a log.

A method supplies `forget_loss(model, batch)`; the loop tokenises (question, answer) pairs with
the same chat rendering that evaluation uses, masks the question out of the labels (TOFU's
`mask=true`), and runs AdamW for the given epochs over the forget set (closer-look / TOFU
defaults: lr 1e-5, weight decay 0.01, 5 epochs).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from ..prompts import encode_answer, question_ids
from ..result import EditResult

log = logging.getLogger(__name__)


@dataclass
class TrainHParams:
    lr: float = 1e-5
    epochs: int = 5
    batch_size: int = 4
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0

    ALIASES = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size"}


def qa_batch(tokenizer, pairs: list[tuple[str, str]], device) -> dict[str, torch.Tensor]:
    """Right-padded (question, answer + EOS) batch whose labels cover the answer tokens only."""
    rows = [(question_ids(tokenizer, q), encode_answer(tokenizer, a)) for q, a in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for row, (p, a) in enumerate(rows):
        ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        labels[row, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[row, : len(p) + len(a)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def train_on_forget(
    model, tokenizer, pairs: list[tuple[str, str]], hp: TrainHParams,
    forget_loss: Callable[[torch.nn.Module, dict], torch.Tensor], name: str,
) -> EditResult:
    """Run the optimiser over shuffled forget batches; the model changes in place."""
    device = next(model.parameters()).device
    optimiser = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
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
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                optimiser.step()
                losses.append(round(loss.item(), 4))
                bar.update(1)
    model.eval()
    return EditResult(model=model, log={"method": name, "loss": losses, "steps": len(losses),
                                        "seconds": round(time.perf_counter() - started, 2)})
