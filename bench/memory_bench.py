"""GRACE and WISE on the embedded model: seconds per edit against a baseline in the same run, and generation with
the adaptor attached against the bare model.

* seconds per edit: GRACE and WISE as configured (each training pass starts at the memory's block) against the same
  edits with every pass from the token ids (`reuse_frozen: false`); WISE's masked gradients (knowledge shards,
  `mask_ratio` 0.2) against dense ones (`mask_ratio` 1.0).
* generation: greedy answers (32 new tokens, batches of 16) to the kept questions with the adaptor attached, against
  the same model after `remove()`; the adaptor must cost under 1.3x.
Each timing is the best of `--repeats` runs, alternating the order of the variants.

    OMP_NUM_THREADS=1 python bench/memory_bench.py [--edits 3] [--questions 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from e2u.data.refusals import refusal_for
from e2u.editing.memory import grace, wise
from e2u.editing.requests import EditRequest
from e2u.evaluation.evaluate import generate_answers
from e2u.methods import method_hparams
from e2u.model.load import load_model
from e2u.model.prompts import question_ids

QUESTIONS = Path(__file__).resolve().parents[1] / "lib" / "e2u" / "data" / "factual_questions.jsonl"


def per_edit(model, tokenizer, module, hp, requests, locality) -> float:
    started = time.perf_counter()
    adaptor = module.edit(model, tokenizer, requests, locality, hp)
    seconds = (time.perf_counter() - started) / len(requests)
    adaptor.remove()
    return seconds


def generation_seconds(model, tokenizer, prompts) -> float:
    started = time.perf_counter()
    generate_answers(model, tokenizer, prompts, max_new_tokens=32, batch_size=16)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model(args.model)
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    forget, kept = rows[: args.edits], rows[100 : 100 + args.questions]
    requests = [EditRequest(r["question"], refusal_for(r["question"], "fixed", 0), r.get("subject")) for r in forget]
    prompts = [question_ids(tokenizer, r["question"]) for r in kept]
    locality = list(zip([r["question"] for r in kept], generate_answers(model, tokenizer, prompts)))
    defaults = {name: method_hparams(name, model, args.model, {"max_retain_routing": 1.0}) for name in ("grace", "wise")}
    variants = {
        "grace": (grace, defaults["grace"]),
        "grace, every pass from the token ids": (grace, method_hparams("grace", model, args.model,
                                                                       {"max_retain_routing": 1.0, "reuse_frozen": False})),
        "wise": (wise, defaults["wise"]),
        "wise, every pass from the token ids": (wise, method_hparams("wise", model, args.model,
                                                                     {"max_retain_routing": 1.0, "reuse_frozen": False})),
        "wise, dense gradients (mask_ratio 1.0)": (wise, method_hparams("wise", model, args.model,
                                                                        {"max_retain_routing": 1.0, "mask_ratio": 1.0})),
    }
    best = {name: float("inf") for name in variants}
    names = list(variants)
    for round_ in tqdm(range(args.repeats), desc="edit rounds"):
        for name in names if round_ % 2 == 0 else names[::-1]:
            module, hp = variants[name]
            best[name] = min(best[name], per_edit(model, tokenizer, module, hp, requests, locality))
    print(f"seconds per edit ({args.edits} edits, {args.model}, {torch.get_num_threads()} thread(s)):")
    for name, seconds in best.items():
        print(f"  {name:45s} {seconds:7.2f} s")
    print(f"  ratio grace shortcut / from token ids:        {best['grace'] / best['grace, every pass from the token ids']:.2f}x")
    print(f"  ratio wise shortcut / from token ids:         {best['wise'] / best['wise, every pass from the token ids']:.2f}x")
    print(f"  ratio wise masked / dense:                    {best['wise'] / best['wise, dense gradients (mask_ratio 1.0)']:.2f}x")

    for name in ("grace", "wise"):
        module, hp = variants[name]
        adaptor = module.edit(model, tokenizer, requests, locality, hp)
        attached = bare = float("inf")
        for round_ in range(args.repeats):
            for state in (("attached", "bare") if round_ % 2 == 0 else ("bare", "attached")):
                if state == "attached":
                    attached = min(attached, generation_seconds(model, tokenizer, prompts))
                else:
                    adaptor.remove()
                    bare = min(bare, generation_seconds(model, tokenizer, prompts))
                    adaptor = type(adaptor).restore(model, adaptor.site, adaptor.tensors(), adaptor.meta(), adaptor.log)
        adaptor.remove()
        ratio = attached / bare
        print(f"generation, {args.questions} questions x 32 tokens, {name} attached {attached:.2f} s vs bare {bare:.2f} s: "
              f"{ratio:.2f}x ({'under' if ratio < 1.3 else 'NOT under'} the 1.3x budget)")


if __name__ == "__main__":
    main()
