"""Second-moment statistics for several layers: one early-stopped pass vs a full pass per layer.

The naive baseline is what a direct port of the reference `layer_stats` does: one full forward
pass over the corpus for every layer. e2u collects every layer in one pass that stops after the
deepest one. Prints seconds for both, checks they agree, and prints the ratio.

    python bench/stats_bench.py [--model smollm2-135m-instruct] [--layers 4 5 6 7 8] [--tokens 4000]
"""

from __future__ import annotations

import argparse
import time

import torch

from e2u.editing.corpus import question_bank_corpus
from e2u.editing.stats import plain_second_moments, second_moments
from e2u.model.arch import find_arch
from e2u.model.load import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 5, 6, 7, 8])
    parser.add_argument("--tokens", type=int, default=4000)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    arch = find_arch(model)
    corpus = question_bank_corpus(tokenizer)
    print(f"{args.model}: layers {args.layers}, {args.tokens} tokens of {corpus.name}, {torch.get_num_threads()} threads")
    started = time.perf_counter()
    naive = plain_second_moments(model, tokenizer, arch, args.layers, corpus, args.tokens, 256)
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    fast = second_moments(model, tokenizer, arch, args.layers, corpus, args.tokens, 256, use_cache=False)
    fast_s = time.perf_counter() - started
    error = max((fast[layer] - naive[layer]).abs().max().item() / naive[layer].abs().max().item() for layer in args.layers)
    print(f"naive (full pass per layer): {naive_s:7.1f} s")
    print(f"e2u (one pass, early stop) : {fast_s:7.1f} s")
    print(f"ratio                      : {naive_s / fast_s:7.2f}x   (max relative difference {error:.1e})")


if __name__ == "__main__":
    main()
