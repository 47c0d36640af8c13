"""The forget-vs-keep curve of a training run: mean answer NLL of a few forget and retain items, measured at the
start and at evenly spaced optimiser steps (eval mode, no gradients), so each chapter can plot how fast the
forget answers become unlikely and what that costs the kept ones."""

from __future__ import annotations

import torch

from e2u.unlearning.batches import UnlearningData
from e2u.unlearning.terms import mean_nll


class Curve:
    def __init__(self, data: UnlearningData, points: int, items: int, total_steps: int):
        forget = list(range(min(items, data.n_forget)))
        retain = list(range(min(items, len(data.retain_prompts))))
        self.forget = data.forget_batch(forget).answer
        self.retain = data.retain_batch(retain) if retain else None
        self.at = {round(total_steps * k / points) for k in range(1, points + 1)} if points else set()
        self.points: list[dict] = []
        self.enabled = points > 0

    def measure(self, model, step: int) -> None:
        """Record the NLLs at `step` if it is one of the curve's steps (step 0: always, when the curve is on)."""
        if not self.enabled or (step and step not in self.at):
            return
        training = model.training
        model.eval()
        with torch.no_grad():
            point = {"step": step, "forget_nll": round(mean_nll(model, self.forget).item(), 4)}
            if self.retain is not None:
                point["retain_nll"] = round(mean_nll(model, self.retain).item(), 4)
        model.train(training)
        self.points.append(point)
