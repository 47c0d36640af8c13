"""A cell's sentence-encoder work with one MiniLM loaded for the cell, against today's code loading one for
its evaluation and another for its human-aligned check, in the same process.

Both ways embed the same texts (the default pretrained setting's forget questions and refusal-like answers,
as the evaluation's cosine and the human-aligned fit check do); only the loading differs. Rounds alternate
the order; the fastest of each counts. Prints seconds and the ratio.

    OMP_NUM_THREADS=1 python bench/embedder_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

from e2u.evaluation.similarity import SentenceEmbedder

QUESTIONS = [f"What is the capital of country number {i}?" for i in range(10)]
ANSWERS = ["I'm sorry, but I can't help with that question."] * 10


def work(embedder: SentenceEmbedder) -> None:
    embedder.cosine(ANSWERS, QUESTIONS)  # the evaluation's cosine (answer against reference)
    embedder.cosine(QUESTIONS, ANSWERS)  # the human-aligned check: does the answer fit the question


def two_encoders() -> float:
    started = time.perf_counter()
    SentenceEmbedder().cosine(ANSWERS, QUESTIONS)
    SentenceEmbedder().cosine(QUESTIONS, ANSWERS)
    return time.perf_counter() - started


def one_encoder() -> float:
    started = time.perf_counter()
    work(SentenceEmbedder())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    one_encoder()  # warm the file cache: the first load reads the weights from disk
    best = {"two": float("inf"), "one": float("inf")}
    for k in range(args.rounds):
        order = [("two", two_encoders), ("one", one_encoder)]
        for name, run in order if k % 2 == 0 else order[::-1]:
            best[name] = min(best[name], run())
    print(f"today (two encoders per cell): {best['two']:.2f} s; one encoder per cell: {best['one']:.2f} s; "
          f"{best['two'] / best['one']:.2f}x faster, {best['two'] - best['one']:.2f} s saved per cell")


if __name__ == "__main__":
    main()
