"""The LoRA baselines with their frozen lower blocks run once per row (`training/frozen_blocks.py`), against
today's loop running every block at every step, on the embedded model, in the same process.

Each method (GA, KL, DPO: a loss without, with a KL reference pass, with a reference sequence pass) trains
from the same weights on the same forget and retain items with the default study's hyper-parameters, once
each way; two rounds, the second in reverse order, the faster run of each counts. Prints seconds per run,
the ratio, and the largest weight difference between the two ways (float32 rounding only).

    OMP_NUM_THREADS=1 python bench/frozen_blocks_bench.py [--forget 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from tqdm import tqdm

from e2u.data.sources import load_source
from e2u.methods import get_method, method_hparams
from e2u.model.load import load_model
from e2u.problem import UnlearningProblem
from e2u.unlearning import dpo, gradient_ascent, kl
from e2u.unlearning.loop import unlearn

LOSSES = {"gradient_ascent": gradient_ascent.loss, "kl": kl.loss, "dpo": dpo.loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--forget", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    splits = load_source("pistol", None, {"seed": 0, "retain_eval": 20})
    problem = UnlearningProblem(splits["forget"][: args.forget], splits["retain"])
    runs = [(name, reuse) for name in LOSSES for reuse in (False, True)]
    schedule = [r for k in range(args.repeats) for r in (runs if k % 2 == 0 else runs[::-1])]
    seconds, weights = {}, {}
    for name, reuse in tqdm(schedule, desc="runs"):
        hp = method_hparams(name, model, args.model, {})
        trained = copy.deepcopy(model)
        started = time.perf_counter()
        unlearn(trained, tokenizer, problem, hp, LOSSES[name], get_method(name).name, reuse_frozen=reuse)
        seconds[name, reuse] = min(seconds.get((name, reuse), float("inf")), time.perf_counter() - started)
        weights[name, reuse] = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    for name in LOSSES:
        plain, fast = seconds[name, False], seconds[name, True]
        gap = max((weights[name, False][k] - weights[name, True][k]).abs().max().item() for k in weights[name, True])
        print(f"{name:<16} every block {plain:6.1f} s, lower blocks stored {fast:6.1f} s: {plain / fast:.2f}x faster; "
              f"largest weight difference {gap:.1e}")
    total_plain = sum(seconds[n, False] for n in LOSSES)
    total_fast = sum(seconds[n, True] for n in LOSSES)
    print(f"all three: {total_plain / total_fast:.2f}x faster ({torch.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
