"""Optimiser steps per second of the unlearning loop (`unlearning/loop.py`) on the embedded model, against a plain
`transformers.Trainer` running the same loss on the same batches in the same process, and LoRA against full weights.

Every run starts from the same weights, trains the same adapter (or weights) with gradient difference's loss on the
same micro-batches (our loop's order: forget items with their retain partners) at the same learning rate and
schedule shape; the Trainer gets them through a sequential sampler and a collator that returns our batches, and
`compute_loss` calls the method's loss; both are timed from tokenising to the merged adapter. Each variant runs in
two rounds, the second in reverse order (a run's position in a round moved its time by about 5%), and its faster
run counts. Prints seconds per step, the ratios, and the largest weight difference between our run and the
Trainer's (their warm-up formulas differ by one step, so the weights differ slightly).

    OMP_NUM_THREADS=1 python bench/unlearn_bench.py [--model smollm2-135m-instruct] [--forget 8] [--epochs 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import replace

import torch
from tqdm import tqdm

from e2u.data.sources import load_source
from e2u.methods import method_hparams
from e2u.model.load import load_model
from e2u.problem import UnlearningProblem
from e2u.training.trainable import merge_adapter, only_trainable
from e2u.unlearning import gradient_difference
from e2u.unlearning.batches import UnlearningData
from e2u.unlearning.loop import combined
from e2u.unlearning.reference import Reference


def ours(model, tokenizer, problem, hp) -> float:
    started = time.perf_counter()
    deltas = gradient_difference.apply(model, tokenizer, problem, hp)
    return (time.perf_counter() - started) / deltas.log["steps"]


def with_trainer(model, tokenizer, problem, hp) -> float:
    """The same training through `transformers.Trainer`: our batches, our loss, its optimiser loop."""
    from transformers import Trainer, TrainingArguments

    started = time.perf_counter()  # timed like ours: tokenising, attaching and merging the adapter included
    data = UnlearningData(tokenizer, problem.forget, problem.retain, hp.batch_size, hp.seed, "cpu")
    batches = [pair for epoch in range(hp.epochs) for pair in data.batches(epoch)]

    class SameBatches(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(range(len(batches)))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            forget, retain = batches[inputs["index"]]
            return combined(gradient_difference.loss(model, forget, retain, reference, hp), hp)

    with tempfile.TemporaryDirectory() as scratch, only_trainable(model, hp):
        reference = Reference(model, problem, hp.adapter)
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=1, num_train_epochs=1,
                                 learning_rate=hp.lr, weight_decay=hp.weight_decay, warmup_ratio=hp.warmup,
                                 lr_scheduler_type="linear", max_grad_norm=hp.max_grad_norm, report_to=[],
                                 save_strategy="no", logging_strategy="no", use_cpu=True, seed=hp.seed,
                                 remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0)
        trainer = SameBatches(model=model, args=args, train_dataset=list(range(len(batches))),
                              data_collator=lambda rows: {"index": rows[0]})
        trainer.train()
        merge_adapter(model, hp)
    return (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--forget", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    splits = load_source("pistol", None, {"seed": 0, "retain_eval": 20})
    problem = UnlearningProblem(splits["forget"][: args.forget], splits["retain"])
    base = method_hparams("gradient_difference", model, args.model, {"epochs": args.epochs, "curve_points": 0})
    full = replace(base, adapter="full")
    runs = [("Trainer, LoRA", with_trainer, base), ("ours, LoRA", ours, base), ("ours, full weights", ours, full)]
    ours(copy.deepcopy(model), tokenizer, problem, replace(base, epochs=1))  # warm-up: the first run pays allocation
    seconds, weights = {}, {}
    schedule = [r for k in range(args.repeats) for r in (runs if k % 2 == 0 else runs[::-1])]
    for name, run, hp in tqdm(schedule, desc="runs"):
        trained = copy.deepcopy(model)  # `repeats` rounds, every other one in reverse order; the fastest run counts
        seconds[name] = min(seconds.get(name, float("inf")), run(trained, tokenizer, problem, hp))
        weights[name] = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    for name, value in seconds.items():
        print(f"{name:<20} {value:6.2f} s per step  ({1 / value:.3f} steps/s)")
    gap = max((weights["ours, LoRA"][k] - weights["Trainer, LoRA"][k]).abs().max().item() for k in weights["ours, LoRA"])
    print(f"ours vs Trainer (LoRA): {seconds['Trainer, LoRA'] / seconds['ours, LoRA']:.2f}x the Trainer's speed; "
          f"largest weight difference {gap:.1e}")
    print(f"LoRA vs full weights (ours): {seconds['ours, full weights'] / seconds['ours, LoRA']:.2f}x faster with LoRA "
          f"({base.train_layers or 'all'} blocks adapted or trained)")


if __name__ == "__main__":
    main()
