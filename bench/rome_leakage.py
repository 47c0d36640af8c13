"""How much of a ROME edit reaches other prompts: leakage with the key statistics C against C = I.

A rank-one update W += (v* - W k) u^T / (u^T k), u = C^-1 k*, changes the output at any other key k'
by the fraction u^T k' / u^T k of the edit (ROME eq. 2). For the forget requests of the embedded set
and every token of every neighbour prompt this prints, per layer, the leakage summed over the edits at
each neighbour's worst token (mean over neighbours), with C and with the identity (no covariance
adjustment), their ratio, and how much of its own edit each forget question's paraphrase receives.
Nothing is edited; statistics come from the cache when present. `--write` also writes the table to
bench/results/rome_leakage.json, which the editors chapter quotes (`e2u.book.measured`).

    python bench/rome_leakage.py [--model smollm2-135m-instruct] [--layers 3 5 8 12] [--write]
"""

from __future__ import annotations

import argparse

import torch

from e2u.data.sources import load_source
from e2u.editing.keys import compute_keys, context_templates
from e2u.editing.requests import unlearning_requests
from e2u.editing.rome import RomeHParams
from e2u.editing.stats import layer_moments
from e2u.hparams import family_defaults
from e2u.model.arch import find_arch
from e2u.model.hooks import trace
from e2u.model.load import load_model
from e2u.model.prompts import question_ids


@torch.no_grad()
def keys_at_every_token(model, arch, layers, prompts):
    """Per layer, a list of (tokens, d_k) key matrices, one per prompt."""
    paths = {layer: arch.mlp_out_path(layer) for layer in layers}
    out = {layer: [] for layer in layers}
    for ids in prompts:
        with trace(model, list(paths.values()), retain_input=True, stop=True) as t:
            model(input_ids=torch.tensor([ids]))
        for layer, path in paths.items():
            out[layer].append(t.inputs[path][0].float())
    return out


def leakage(u, k_bare, neighbour_keys, paraphrase_keys):
    """(mean over neighbours of the summed worst-token leakage, mean paraphrase self-gain)."""
    denominator = (u * k_bare).sum(1)
    leaks = [((u @ keys.T).abs() / denominator.abs()[:, None]).max(1).values.sum().item() for keys in neighbour_keys]
    gains = [((u[i] @ keys.T) / denominator[i]).max().item() for i, keys in enumerate(paraphrase_keys)]
    return sum(leaks) / len(leaks), sum(gains) / len(gains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 5, 8, 12])
    parser.add_argument("--write", action="store_true", help="write bench/results/rome_leakage.json")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    arch = find_arch(model)
    splits = load_source("mini")
    requests = unlearning_requests(splits["forget"])
    defaults = family_defaults("rome", model.config.model_type, args.model)
    rome_layer = defaults.pop("layer", None)
    hp = RomeHParams(**defaults)
    moments, corpus = layer_moments(model, tokenizer, arch, args.layers, hp)
    templates = context_templates(model, tokenizer, hp.n_context_templates, hp.context_template_length, hp.seed)
    k_star = compute_keys(model, tokenizer, arch, args.layers, requests, templates)
    k_bare = compute_keys(model, tokenizer, arch, args.layers, requests, ["{}"])
    neighbours = keys_at_every_token(model, arch, args.layers, [question_ids(tokenizer, r.question) for r in splits["neighbour"]])
    paraphrases = keys_at_every_token(model, arch, args.layers, [question_ids(tokenizer, r.paraphrased_question) for r in splits["forget"]])
    print(f"{args.model}: {len(requests)} edits, {len(splits['neighbour'])} neighbours; C from {corpus}")
    print(f"{'layer':>5} {'leak, C':>8} {'leak, C=I':>10} {'ratio':>6} {'paraphrase gain, C':>19}")
    table = {}
    for layer in args.layers:
        moment = moments[layer].double()
        ridge = hp.mom2_ridge * moment.diagonal().mean()
        inverse = torch.linalg.inv(moment + ridge * torch.eye(moment.shape[0], dtype=moment.dtype)).float()
        with_c, gain = leakage(k_star[layer] @ inverse, k_bare[layer], neighbours[layer], paraphrases[layer])
        without_c, _ = leakage(k_star[layer], k_bare[layer], neighbours[layer], paraphrases[layer])
        print(f"{layer:>5} {with_c:8.3f} {without_c:10.3f} {without_c / with_c:5.2f}x {gain:19.3f}")
        table[str(layer)] = {"with_c": with_c, "identity": without_c, "ratio": without_c / with_c, "paraphrase_gain": gain}
    if args.write:
        from e2u.book.measured import write_measurement

        leaks = [row["with_c"] for row in table.values()]
        print("wrote", write_measurement("rome_leakage", {
            "model": args.model, "edits": len(requests), "neighbours": len(splits["neighbour"]),
            "rome_layer": rome_layer if isinstance(rome_layer, int) else None, "layers": table,
            "first_layer": args.layers[0], "last_layer": args.layers[-1],
            "least_with_c": min(leaks), "most_with_c": max(leaks)}))


if __name__ == "__main__":
    main()
