"""One cell's evaluation: `evaluate_records` (each prompt batch run once, for the greedy answer and the answer
likelihoods) against its plain definition `evaluate_records_reference` (generate_answers, then answer_nll), same process,
same records.

The records are those `evaluate_dataset` builds for the finetuned setting's data (fictional authors: forget,
retain and their paraphrased questions, real_authors, world_facts), the first `--questions` of each split.
Prints the times, their ratios to the reference, whether the greedy answers are identical, and the largest
per-item difference.

    python bench/evaluation_bench.py [--model smollm2-135m-instruct] [--questions 8] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from tqdm import tqdm

from e2u.data.sources import load_source
from e2u.evaluation.evaluate import evaluate_records, evaluate_records_reference, evaluation_parts, load_embedder
from e2u.model.load import load_model

DATA_OPTIONS = {"n_authors": 10, "forget_percent": 10, "retain_eval": 20, "seed": 0}


def largest_difference(found: list[dict], expected: list[dict]) -> tuple[float, str, int, int]:
    """(largest |a - b| / max(1, |b|) over every number of every item, its key, its item, items whose
    non-numeric values differ)."""
    worst, where, item_of, differing = 0.0, "", -1, 0
    for n, (a, b) in enumerate(zip(found, expected)):
        if set(a) != set(b) or any(a[k] != b[k] for k in b if not isinstance(b[k], float)):
            differing += 1
        for key, value in b.items():
            if isinstance(value, float):
                gap = abs(a[key] - value) / max(1.0, abs(value)) if math.isfinite(value) else float(a[key] != value)
                if gap > worst:
                    worst, where, item_of = gap, key, n
    return worst, where, item_of, differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=8, help="records per split (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    splits = load_source("fictional", None, DATA_OPTIONS)
    records = [r for _, rs in evaluation_parts(splits) for r in (rs[: args.questions] if args.questions else rs)]
    embedder = load_embedder()
    print(f"model {args.model} on {next(model.parameters()).device}, {torch.get_num_threads()} threads, "
          f"{len(records)} records, batch size {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"cosine {'on' if embedder else 'off'}")
    paths = {
        "reference (generate_answers + answer_nll)": evaluate_records_reference,
        "evaluate_records (one prompt pass)": evaluate_records,
    }
    for function in paths.values():  # warm-up: imports, first calls
        function(model, tokenizer, records[:2], 2, args.batch_size, embedder)
    timings, results = {}, {}
    for label, function in tqdm(paths.items(), desc="evaluate", leave=False):
        started, started_cpu = time.perf_counter(), time.process_time()
        results[label] = function(model, tokenizer, records, args.max_new_tokens, args.batch_size, embedder)
        timings[label] = (time.perf_counter() - started, time.process_time() - started_cpu)
    # CPU seconds count this process's work only: on a shared machine they vary less than wall seconds.
    reference = next(iter(paths))
    old_wall, old_cpu = timings[reference]
    for label, (wall, cpu) in timings.items():
        worst, key, item, differing = largest_difference(results[label], results[reference])
        same = sum(a["generated"] == b["generated"] for a, b in zip(results[label], results[reference]))
        print(f"{label:42s}: {wall:6.1f} s wall {cpu:6.1f} s CPU, ratio {old_wall / wall:5.2f}x wall "
              f"{old_cpu / cpu:5.2f}x CPU; identical answers {same}/{len(records)}, items with other "
              f"non-numeric differences {differing}, largest difference {worst:.2e} ({key or '-'}, item {item})")
    print("largest difference: |a - b| / max(1, |b|) over every number of every item, against the reference")

if __name__ == "__main__":
    main()
