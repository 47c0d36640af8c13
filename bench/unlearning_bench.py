"""Gradient ascent's training step: the answer-only loss (`loop.answer_nll`, the LM head only where an
answer token is predicted) against HF's `labels=` loss over every position, on the same batches.

Both run the same steps from the same weights in one process, alternating; prints seconds per step,
the ratio, and the largest difference between the two runs' losses and final weights.

    OMP_NUM_THREADS=1 python bench/unlearning_bench.py [--model smollm2-135m-instruct] [--questions 16] [--epochs 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from tqdm import tqdm

from e2u.data.sources import load_source
from e2u.models import load_model
from e2u.unlearning.gradient_ascent import GradientAscentHParams
from e2u.unlearning.loop import answer_nll, train_on_forget


def full_sequence_loss(model, batch) -> torch.Tensor:
    return -model(**batch).loss  # the baseline: logits and softmax at every position


def answer_only_loss(model, batch) -> torch.Tensor:
    return -answer_nll(model, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    splits = load_source("fictional", None, {"n_authors": 10, "forget_percent": 10, "retain_eval": 20, "seed": 0})
    pairs = [(r.question, r.answer) for r in splits["forget"][: args.questions]]
    hp = GradientAscentHParams(epochs=args.epochs, batch_size=4, lr=1e-5)
    seconds, runs = {}, {}
    for name, loss in tqdm([("full sequence", full_sequence_loss), ("answer only", answer_only_loss)], desc="runs"):
        trained = copy.deepcopy(model)
        started = time.perf_counter()
        deltas = train_on_forget(trained, tokenizer, pairs, hp, loss, name)
        seconds[name] = (time.perf_counter() - started) / deltas.log["steps"]
        runs[name] = (deltas.log["loss"], dict(trained.named_parameters()))
    for name, value in seconds.items():
        print(f"{name:<14} {value:6.2f} s per step")
    (full_losses, full_weights), (fast_losses, fast_weights) = runs["full sequence"], runs["answer only"]
    loss_gap = max(abs(a - b) for a, b in zip(full_losses, fast_losses))
    weight_gap = max((full_weights[k] - fast_weights[k]).abs().max().item() for k in full_weights)
    print(f"ratio {seconds['full sequence'] / seconds['answer only']:.2f}x; largest loss difference {loss_gap:.1e}, "
          f"largest weight difference {weight_gap:.1e} after {len(full_losses)} steps")


if __name__ == "__main__":
    main()
