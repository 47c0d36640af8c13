"""Seconds per ROME value optimisation, every block run at every step vs starting at the edited block.

`batched_values.optimise_values` computes the hidden states entering the block that holds the edited
module once, without gradient, and starts every Adam step there (`block_inputs.BlockInputs`); `skip_blocks=False`
is the cost before that cut. Both run in the same process, alternately, on the same requests from
the same weights, with ROME's hyper-parameters for the model and a fixed number of steps (no early
stop); the printed difference of v* shows the cut leaves the result as it was.

    python bench/rome_values_bench.py [--model smollm2-135m-instruct] [--requests 2] [--steps 25]
"""

from __future__ import annotations

import argparse
import time

import torch

from e2u.data.sources import load_source
from e2u.editing.batched_values import optimise_values
from e2u.editing.layers import edited_layers
from e2u.editing.locate import set_up
from e2u.editing.requests import unlearning_requests
from e2u.methods import method_hparams
from e2u.model.load import load_model


def timed(model, tokenizer, request, templates, site, hp, skip_blocks: bool):
    started = time.perf_counter()
    ((v_star, _, log),) = optimise_values(model, tokenizer, [request], templates, site, hp, skip_blocks=skip_blocks)
    return time.perf_counter() - started, v_star, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25, help="value-optimisation steps (no early stop)")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    requests = unlearning_requests(load_source("mini")["forget"][: args.requests])
    hp = method_hparams("rome", model, args.model, {"v_num_grad_steps": args.steps, "early_stop_loss": 0.0})
    setup = set_up(model, tokenizer, requests, hp, [0], with_moments=False)  # the context templates
    layer = edited_layers(hp.layer, setup.arch.n_layers, count=1, name="layer")[0]
    site = setup.arch.mlp_path(layer)
    print(f"{args.model}: ROME at layer {layer} of {setup.arch.n_layers}, {len(setup.templates)} templates, "
          f"{args.steps} steps, {len(requests)} requests, {torch.get_num_threads()} threads")
    before, after, differences = [], [], []
    for request in requests:
        slow_s, slow, _ = timed(model, tokenizer, request, setup.templates, site, hp, skip_blocks=False)
        fast_s, fast, _ = timed(model, tokenizer, request, setup.templates, site, hp, skip_blocks=True)
        before.append(slow_s)
        after.append(fast_s)
        differences.append((fast - slow).abs().max().item())
    b, a = sum(before) / len(before), sum(after) / len(after)
    print(f"{'all blocks every step':<28} {b:6.2f} s per value optimisation")
    print(f"{'from the edited block':<28} {a:6.2f} s per value optimisation")
    print(f"ratio {b / a:.2f}x   max |v* difference| {max(differences):.1e}")


if __name__ == "__main__":
    main()
