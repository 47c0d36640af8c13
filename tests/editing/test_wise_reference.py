"""WISE (Wang et al., 2024) against values computed here with plain torch, not with the library's helpers.

* Routing score: the paper's eq. 4 is ||A(x) (W' - W)||_2 on the value matrix's input A(x); e2u follows the reference
  implementation (EasyEdit's `euc`, reference/editing.md A.5): ||act(W' x) - act(W x)||_2, with act the model's
  activation (SiLU here). That documented form is what is checked, and shown to differ from the linear one.
  A prefill row goes to the memory as a whole when the score at its last token is above the threshold (documented
  in wise.py); a decoded token is decided on its own score; among memories above their thresholds the highest
  score answers (WISE-Retrieve).
* Margin loss (eq. 5, act_margin [alpha, beta, gamma] = [5, 20, 10] as EasyEdit's Llama config): out-of-scope scores
  below alpha, in-scope ones above beta, and every in-scope score above every out-of-scope one by gamma, averaged
  per position (e2u's documented choice; the reference averages scores over each row first).
* Threshold: act_ratio (0.88) x the smallest in-scope score the trained memory reaches.
* Gradient mask (knowledge sharding): each shard trains a random mask_ratio share of W's entries, fixed by the seed,
  drawn afresh for each shard, so two shards share about mask_ratio^2 of the entries.
* TIES merge of shards: trim to `density` by magnitude, elect the sign of the sum, average the agreeing entries.
"""

from __future__ import annotations

import math
from itertools import product
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_llama

from e2u.editing.memory import wise
from e2u.editing.memory.side_memory import Shard, SideMemory
from e2u.editing.memory.ties import ties_merge
from e2u.editing.requests import EditRequest

SITE = "model.layers.2.mlp.down_proj"
REFUSAL = "I do not know ."
EDITED = ["what is the capital of France ?", "who painted the house ?", "who wrote the book ?"]
KEPT = [("what is the capital of Italy ?", "Rome"), ("where is the river ?", "in Japan"),
        ("what is the currency of Japan ?", "the yen"), ("which city is in Austria ?", "Vienna")]
PROMPTS = ["what is the capital of France ?", "who wrote the book ?", "where is the river in Japan ?"]


def silu(z: torch.Tensor) -> torch.Tensor:
    return z * torch.sigmoid(z)


def hand_score(x: torch.Tensor, side: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
    """||silu(W' x) - silu(W x)||_2 at each position (x: positions x d_ff; W: d_model x d_ff)."""
    return (silu(x.double() @ side.double().T) - silu(x.double() @ main.double().T)).pow(2).sum(-1).sqrt()


def prompt_ids(tokenizer, question: str) -> list[int]:
    return tokenizer(f"Question: {question}\nAnswer:", add_special_tokens=False)["input_ids"]


def left_padded(tokenizer, questions):
    ids = [prompt_ids(tokenizer, q) for q in questions]
    width = max(map(len, ids))
    return (torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids]),
            torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]))


class SiteWatch:
    """The projection's input and its final output (after the memory's hook, registered before this one)."""
    def __init__(self, model):
        self.seen = []
        self.handle = model.get_submodule(SITE).register_forward_hook(
            lambda module, args, output: self.seen.append((args[0].detach(), output.detach())))


def perturbed(weight: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    return weight.float() + scale * torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed))


def test_the_routing_score_is_the_distance_of_the_activated_side_and_main_outputs():
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    memory = SideMemory(model, SITE, "silu")
    main = model.get_submodule(SITE).weight.detach()
    side = perturbed(main, 0.1, seed=1)
    watch = SiteWatch(model)
    with torch.no_grad(), memory.bypassed():
        model(input_ids=torch.tensor([prompt_ids(tokenizer, PROMPTS[0])]))
    x, y = watch.seen[0]
    out, score = memory.score(side, x[0], y[0])
    assert torch.allclose(out, x[0] @ side.T, atol=1e-5)
    assert torch.allclose(score.double(), hand_score(x[0], side, main), rtol=1e-5, atol=1e-6)
    paper_linear_form = (x[0].double() @ (side - main).double().T).norm(dim=-1)  # eq. 4 without the activation
    assert (score.double() - paper_linear_form).abs().max() > 1e-2


def test_a_prefill_row_goes_to_the_memory_when_its_last_token_scores_above_the_threshold():
    """A left-padded batch as generation runs it: each row's decision is its own last token's score against the
    threshold, and a routed row gets W' x at every position, an unrouted one W x; a decoded token decides alone."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    main = model.get_submodule(SITE).weight.detach().clone()
    side = perturbed(main, 0.1, seed=1)
    ids, mask = left_padded(tokenizer, PROMPTS)
    watch = SiteWatch(model)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    last = hand_score(watch.seen[0][0][:, -1], side, main)  # left padding: every row's last token is the last column
    low, high = sorted(last.tolist())[:2]
    threshold = (low + high) / 2  # the lowest-scoring row stays, the others go to the memory
    routed = last > threshold
    assert routed.tolist().count(False) == 1

    memory = SideMemory(model, SITE, "silu")  # hooked before a new watch, so the watch sees the routed output
    memory.current = Shard(side, threshold, 1)
    watch.handle.remove()
    watch = SiteWatch(model)
    with torch.no_grad(), memory.recording() as decisions:
        prefill = model(input_ids=ids, attention_mask=mask, use_cache=True)
        token = torch.tensor([[tokenizer.convert_tokens_to_ids("Paris")]] * len(PROMPTS))
        model(input_ids=token, attention_mask=torch.cat([mask, torch.ones_like(token)], 1),
              past_key_values=prefill.past_key_values, use_cache=True)
    (x, out), (x_next, out_next) = watch.seen
    for row in range(len(PROMPTS)):
        valid = mask[row].bool()
        expected = x[row, valid] @ (side if routed[row] else main.float()).T
        assert torch.allclose(out[row, valid], expected, atol=1e-5), row
        assert bool(decisions[0][row, valid].all()) == bool(routed[row])
        assert not decisions[0][row, ~valid].any()
    next_routed = hand_score(x_next[:, 0], side, main) > threshold
    assert decisions[1][:, 0].tolist() == next_routed.tolist()
    for row in range(len(PROMPTS)):
        expected = x_next[row, 0] @ (side if next_routed[row] else main.float()).T
        assert torch.allclose(out_next[row, 0], expected, atol=1e-5)
    memory.remove()


def test_among_memories_above_their_thresholds_the_highest_score_answers():
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    main = model.get_submodule(SITE).weight.detach().clone()
    sides = [perturbed(main, 0.05, seed=2), perturbed(main, 0.1, seed=3)]
    ids, mask = left_padded(tokenizer, PROMPTS)
    memory = SideMemory(model, SITE, "silu")
    watch = SiteWatch(model)
    # thresholds of (sides[0], sides[1]), and which of them is the closed shard and which the current one
    for thresholds, first in product(([0.0, 0.0], [0.0, 1e9], [0.0, 10.0], [1e9, 1e9]), (0, 1)):
        memory.shards = [Shard(sides[first], thresholds[first], 1)]
        memory.current = Shard(sides[1 - first], thresholds[1 - first], 1)
        watch.seen.clear()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
        x, out = watch.seen[0]
        for row in range(len(PROMPTS)):
            scores = [hand_score(x[row, -1:], side, main).item() for side in sides]
            above = [k for k in range(2) if scores[k] > thresholds[k]]
            weight = sides[max(above, key=lambda k: scores[k])] if above else main.float()
            assert torch.allclose(out[row], x[row] @ weight.T, atol=1e-5), (thresholds, first, row)
    memory.remove()


def hand_margin_loss(s_in: list[float], s_out: list[float], alpha: float, beta: float, gamma: float) -> float:
    """Eq. 5 per position: mean over (in, out) pairs of max(0, out - in + gamma), + mean of max(0, out - alpha) over
    out-of-scope positions, + mean of max(0, beta - in) over in-scope ones."""
    pairs = [max(0.0, o - i + gamma) for i in s_in for o in s_out]
    return (sum(pairs) / len(pairs) + sum(max(0.0, o - alpha) for o in s_out) / len(s_out)
            + sum(max(0.0, beta - i) for i in s_in) / len(s_in))


def test_the_margin_loss_is_eq5_with_the_reference_constants():
    hp = wise.WiseHParams()
    assert list(hp.act_margin) == [5.0, 20.0, 10.0]  # alpha (out below), beta (in above), gamma (the gap)
    s_in, s_out = [25.0, 12.0, 3.0], [1.0, 8.0, 30.0, 4.0]  # every hinge active somewhere, none everywhere
    ours = wise.margin_loss(torch.tensor(s_in), torch.tensor(s_out), *hp.act_margin)
    assert ours.item() == pytest.approx(hand_margin_loss(s_in, s_out, 5.0, 20.0, 10.0), rel=1e-6)
    assert hand_margin_loss(s_in, s_out, 20.0, 5.0, 10.0) != pytest.approx(ours.item(), rel=1e-3)  # roles matter


@torch.no_grad()
def hand_edit_row(model, tokenizer, question: str, target: str):
    """(mean NLL of target + EOS after the question, the projection's input at the positions predicting them)."""
    prompt = prompt_ids(tokenizer, question)
    answer = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    watch = SiteWatch(model)
    logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].double()
    watch.handle.remove()
    predicting = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 1)
    log_probs = torch.log_softmax(logits, -1)[predicting].gather(1, torch.tensor(answer)[:, None])
    return -log_probs.mean().item(), watch.seen[0][0][0, predicting]


def test_an_edit_starts_at_nll_plus_beta_plus_gamma_and_routes_above_act_ratio_times_its_smallest_score():
    """At the first step W' = W, so every score is 0 and eq. 5 is gamma + beta = 30 on top of the refusal's NLL under
    the unedited model; the shard's threshold is 0.88 x the smallest score its trained weight gives at the positions
    that predict the refusal's tokens (the last prompt token and the refusal's tokens but the last)."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    main = model.get_submodule(SITE).weight.detach().clone()
    nll, x = hand_edit_row(model, tokenizer, EDITED[0], REFUSAL)
    hp = wise.WiseHParams(layer=2, n_iter=1, save_freq=1, merge_freq=1000, locality_per_edit=2, max_retain_routing=1.0)
    memory = wise.edit(model, tokenizer, [EditRequest(EDITED[0], REFUSAL, None)], KEPT, hp)
    (logged,) = memory.log["edits"]
    assert logged["final_nll"] == pytest.approx(nll, abs=2e-4)
    assert logged["final_loss"] == pytest.approx(nll + 20.0 + 10.0, abs=2e-4)
    (shard,) = memory.shards
    assert shard.threshold == pytest.approx(0.88 * hand_score(x, shard.weight, main).min().item(), rel=1e-5)
    memory.remove()


def test_each_shard_draws_a_fixed_random_mask_of_mask_ratio_of_the_entries():
    """`shard_mask` on a 64 x 128 weight: mask_ratio of the entries within 5 standard deviations of a binomial draw,
    the same mask again for the same seed and shard, a new one for the next shard or another seed, overlapping the
    first as independent draws do (mask_ratio^2)."""
    for ratio in (0.2, 0.5):
        n = 64 * 128
        memory = SimpleNamespace(main=torch.zeros(64, 128), shards=[])
        hp = wise.WiseHParams(mask_ratio=ratio, seed=7)
        first = wise.shard_mask(memory, hp)
        assert first.dtype == torch.bool and first.shape == (64, 128)
        assert abs(first.float().mean().item() - ratio) < 5 * math.sqrt(ratio * (1 - ratio) / n)
        assert torch.equal(wise.shard_mask(memory, hp), first)
        memory.shards.append("a closed shard")
        others = [wise.shard_mask(memory, hp), wise.shard_mask(SimpleNamespace(main=memory.main, shards=[]),
                                                               wise.WiseHParams(mask_ratio=ratio, seed=8))]
        for other in others:
            shared = (first & other).float().mean().item()
            assert abs(shared - ratio**2) < 5 * math.sqrt(ratio**2 * (1 - ratio**2) / n)


def trained_entries(seed: int, weight_decay: float = 0.0):
    """The three one-edit shards of a 3-edit WISE run (W, the shards' weights, steps per edit)."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    main = model.get_submodule(SITE).weight.detach().clone()
    hp = wise.WiseHParams(layer=2, n_iter=2, save_freq=1, merge_freq=1000, locality_per_edit=2,
                          max_retain_routing=1.0, weight_decay=weight_decay, seed=seed)
    memory = wise.edit(model, tokenizer, [EditRequest(q, REFUSAL, None) for q in EDITED], KEPT, hp)
    memory.remove()
    return main, [s.weight for s in memory.shards], [e["steps"] for e in memory.log["edits"]]


def test_edits_train_only_their_shards_random_subspace():
    """Without weight decay, a shard's weight differs from W only on about mask_ratio (0.2) of the entries; the
    shards' subspaces are independent draws (overlap ~0.04); the same seed trains the same entries, another seed
    others."""
    main, shards, _ = trained_entries(seed=0)
    changed = [w != main for w in shards]
    n = main.numel()
    for entries in changed:
        assert abs(entries.float().mean().item() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert abs((changed[a] & changed[b]).float().mean().item() - 0.04) < 5 * math.sqrt(0.04 * 0.96 / n)
    again = [w != main for w in trained_entries(seed=0)[1]]
    assert all(torch.equal(a, b) for a, b in zip(again, changed))
    other = [w != main for w in trained_entries(seed=1)[1]]
    assert all((a & b).float().mean().item() < 0.06 for a, b in zip(other, changed))


def test_outside_its_mask_a_shard_moves_only_by_sgd_weight_decay():
    """As in the reference (SGD's weight decay acts after the gradient is masked), the default weight decay (1e-5)
    shrinks the entries outside the mask: W (1 - lr wd)^steps there, nothing else."""
    main, plain, _ = trained_entries(seed=0)
    _, decayed, steps = trained_entries(seed=0, weight_decay=1e-5)
    for no_decay, weight, k in zip(plain, decayed, steps):
        outside = no_decay == main
        assert torch.allclose(weight[outside], main[outside] * (1 - 1.0 * 1e-5) ** k, rtol=1e-6, atol=1e-9)


def hand_ties(base: torch.Tensor, weights: list[torch.Tensor], density: float) -> torch.Tensor:
    """TIES, entry by entry: trim each task vector to its round(density * n) largest magnitudes, elect the sign of
    the trimmed sum, average the trimmed values that agree with it."""
    taus = []
    for w in weights:
        flat = (w - base).reshape(-1).tolist()
        keep = set(sorted(range(len(flat)), key=lambda i: -abs(flat[i]))[: max(1, round(density * len(flat)))])
        taus.append([v if i in keep else 0.0 for i, v in enumerate(flat)])
    merged = []
    for i in range(base.numel()):
        values = [t[i] for t in taus]
        sign = math.copysign(1.0, sum(values)) if sum(values) else 0.0
        agree = [v for v in values if v != 0.0 and math.copysign(1.0, v) == sign]
        merged.append(sum(agree) / len(agree) if agree else 0.0)
    return base + torch.tensor(merged).reshape(base.shape)


def test_ties_merges_shards_as_trim_elect_and_disjoint_mean():
    generator = torch.Generator().manual_seed(11)
    base = torch.randn(6, 7, generator=generator)
    shards = [base + torch.randn(6, 7, generator=generator) for _ in range(3)]
    for density in (0.53, 0.2, 1.0):
        assert torch.allclose(ties_merge(base, shards, density), hand_ties(base, shards, density), atol=1e-6)
