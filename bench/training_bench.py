"""Finetuning speed: e2u's `finetune` vs a plain loop, one epoch each on the same records.

The baseline is the loop a direct port of TOFU's finetuning runs: every weight trained, batches in
random order padded to their longest record, logits over the whole sequence (HF `labels=` loss);
the two all-weight runs use lr 1e-4, the top-block run e2u's default.
e2u trains the top `train_layers` blocks, reuses the frozen lower blocks' output, buckets batches by
length and runs the LM head only where answers are predicted. A middle line (every block trained,
bucketing and answer-only logits) separates the two effects. Prints seconds per epoch and ratios.

    python bench/training_bench.py [--model smollm2-135m-instruct] [--records 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from e2u.data.fictional import all_finetune_records
from e2u.model.batching import prompt_answer_batch
from e2u.model.load import load_model
from e2u.model.prompts import encode_answer, question_ids
from e2u.training.finetune import FinetuneHParams, finetune


def plain_epoch(model, tokenizer, records, hp: FinetuneHParams) -> float:
    """One epoch of the naive loop; returns its mean loss."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    order = list(range(len(records)))
    random.Random(hp.seed).shuffle(order)
    losses = []
    model.train()
    for start in range(0, len(order), hp.batch_size):
        chosen = [records[i] for i in order[start : start + hp.batch_size]]
        batch = prompt_answer_batch([question_ids(tokenizer, r.question) for r in chosen],
                                    [encode_answer(tokenizer, r.answer) for r in chosen], tokenizer.pad_token_id)
        loss = model(**batch).loss
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses) / len(losses)


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = all_finetune_records(seed=0, n_authors=max(2, -(-args.records // 20)))[: args.records]
    hp = FinetuneHParams(epochs=1)
    print(f"{args.model}: {len(records)} records, batch {hp.batch_size}, {torch.get_num_threads()} threads")

    whole = FinetuneHParams(epochs=1, lr=1e-4, train_layers=0)  # every weight: a gentler learning rate
    model, tokenizer = load_model(args.model, device="cpu")
    plain_s, plain_loss = timed(lambda: plain_epoch(model, tokenizer, records, whole))
    model, tokenizer = load_model(args.model, device="cpu")
    every_s, every_log = timed(lambda: finetune(model, tokenizer, records, whole))
    model, tokenizer = load_model(args.model, device="cpu")
    fast_s, fast_log = timed(lambda: finetune(model, tokenizer, records, hp))

    fast_epoch = fast_s - fast_log["frozen_states_seconds"]
    rows = [
        ("plain loop: all weights, random batches, full logits", plain_s, plain_loss, ""),
        ("e2u, all blocks: length buckets, answer-only logits", every_s, every_log["final_loss"],
         f"ratio {plain_s / every_s:5.2f}x"),
        (f"e2u, top {hp.train_layers} blocks: + frozen states, shared prefix", fast_epoch, fast_log["final_loss"],
         f"ratio {plain_s / fast_epoch:5.2f}x"),
    ]
    for name, seconds, loss, ratio in rows:
        print(f"{name:<52}: {seconds:6.1f} s/epoch  loss {loss:.3f}  {ratio}")
    print(f"{'  + once per run: the frozen blocks forward':<52}: {fast_log['frozen_states_seconds']:6.1f} s        "
          f"         (one epoch with it: ratio {plain_s / fast_s:5.2f}x)")


if __name__ == "__main__":
    main()
