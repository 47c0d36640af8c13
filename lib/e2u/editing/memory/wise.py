"""WISE: a side memory beside one MLP output projection, with a router (Wang et al., 2024), as an unlearner.

The side memory W' starts as a copy of the projection's weight W. At every position t, with x_t the
projection's input and act the model's activation function (WISE eq. 4 as the reference implementation
computes it, EasyEdit's `euc`; the paper writes it without the activation, || x_t (W' - W) ||_2):

    score_t = || act(W' x_t) - act(W x_t) ||_2,   output_t = W' x_t if score_t > threshold, else W x_t.

Editing a request (WISE section 3, `memory_rows` give the positions):
  1. loss = NLL(refusal | forget question)                                        (edit rows, W' on)
          + mean relu(s_out - s_in + gamma) + mean relu(s_out - alpha) + mean relu(beta - s_in)   (eq. 5)
     with s_in the scores at the edit rows' answer positions and s_out those at every position of
     locality rows (kept questions with their answers, never forget ones; their projection inputs do not
     change while W' trains, so s_out is computed from inputs stored once per edit: `KeptInputs`);
  2. SGD on W' with the gradient masked to a random `mask_ratio` of its elements (the knowledge shard; SGD's
     weight decay acts after the mask, as in the reference, so the other elements only shrink by
     (1 - edit_lr weight_decay) a step), then W' clamped to W +- norm_constraint, for n_iter steps or until
     the loss stops falling;
  3. threshold = act_ratio x the smallest in-scope score any edit of the shard reached.
Every `save_freq` edits the shard is closed and a new one starts from W with a new mask; every
`merge_freq` edits the shards closed since the last merge are merged by TIES (trim to `density`,
elect signs, disjoint mean) into one, whose threshold is step 3 again on the merged weight and every
edit it holds. Retrieve mode routes each position to the shard with the highest
score above its own threshold; with `retrieve: false` every merge folds all shards into one memory.

Ours, where the reference differs: the routing score of a prefill row is its last token's (the reference
averages the score over the sequence of the pass; during KV-cached decoding both are the score of the one
new token), the margin loss per position (each hinge averaged over all its positions or pairs, as
reference/editing.md writes it; EasyEdit's code averages a hinge over its active entries only), the
threshold from the smallest per-position in-scope score,
and the merged memory's threshold measured on the merged weight (the task vectors of disjoint shards add
up, so every score of the merged memory is larger than either shard's). That a routed prefill row is
answered by the memory at every position matters: trained so, a memory that answered only at the
positions above the threshold — the last prompt token, not the question's words before it — routed 9 of
10 forget questions of the pretrained study and refused 1 of them.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import torch

from e2u.editing.memory.routing import check_retain_routing
from e2u.editing.memory.rows import MemoryRows, UpperPass, edit_chunks, edit_row_nll, locality_pairs, memory_rows
from e2u.editing.memory.side_memory import SideMemory
from e2u.editing.memory.site import MemoryHParams, memory_layer, project
from e2u.editing.values import frozen_parameters
from e2u.errors import E2UError
from e2u.hparams import real_number, whole_number
from e2u.model.arch import find_arch
from e2u.model.hooks import trace
from e2u.model.load import input_device

log = logging.getLogger(__name__)


@dataclass
class WiseHParams(MemoryHParams):
    n_iter: int = 70
    weight_decay: float = 1e-5
    mask_ratio: float = 0.2
    norm_constraint: float = 1.0
    act_margin: list = field(default_factory=lambda: [5.0, 20.0, 10.0])  # alpha, beta, gamma
    act_ratio: float = 0.88
    save_freq: int = 500
    merge_freq: int = 1000
    density: float = 0.53
    retrieve: bool = True
    locality_per_edit: int = 1  # kept questions drawn (seeded) for each edit

    METHOD = "wise"
    ALIASES = {"inner_layer": "layer", "mask": "mask_ratio"}

    def extra_rules(self) -> dict:
        share = "a share in (0, 1]"
        margin = self.act_margin
        return {"weight_decay": (real_number(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
                "mask_ratio": (real_number(self.mask_ratio) and 0 < self.mask_ratio <= 1, share),
                "norm_constraint": (real_number(self.norm_constraint) and self.norm_constraint > 0, "a number > 0"),
                "act_margin": (isinstance(margin, (list, tuple)) and len(margin) == 3 and all(map(real_number, margin)),
                               "three numbers [alpha, beta, gamma]"),
                "act_ratio": (real_number(self.act_ratio) and 0 < self.act_ratio <= 1, share),
                "save_freq": (whole_number(self.save_freq) and self.save_freq >= 1, "an integer >= 1"),
                "merge_freq": (whole_number(self.merge_freq) and whole_number(self.save_freq) and self.save_freq >= 1
                               and self.merge_freq % self.save_freq == 0, "a multiple of save_freq"),
                "density": (real_number(self.density) and 0 < self.density <= 1, share),
                "retrieve": (isinstance(self.retrieve, bool), "true or false"),
                "locality_per_edit": (whole_number(self.locality_per_edit) and self.locality_per_edit >= 1,
                                      "an integer >= 1")}


def margin_loss(s_in: torch.Tensor, s_out: torch.Tensor, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """WISE eq. 5, per position: in-scope scores above beta and above every out-of-scope one by gamma,
    out-of-scope scores below alpha."""
    pairwise = torch.relu(s_out[None, :] - s_in[:, None] + gamma).mean()
    return pairwise + torch.relu(s_out - alpha).mean() + torch.relu(beta - s_in).mean()


@dataclass(frozen=True)
class KeptInputs:
    """The projection's input x and its unedited output W x at every position of the locality rows. Nothing
    below the memory changes while it trains, so these are fixed: each step's out-of-scope scores s_out
    (eq. 4) are one product with W', not a forward pass of the locality rows through the upper blocks."""
    x: torch.Tensor  # (positions, d_in)
    y: torch.Tensor  # (positions, d_out)


def kept_inputs(model, memory: SideMemory, rows: MemoryRows) -> KeptInputs:
    """`KeptInputs` of the locality `rows` (every non-padding position), read in one pass that stops at the
    memory's projection."""
    with torch.no_grad(), memory.bypassed(), trace(model, [memory.site], retain_input=True, stop=True) as t:
        model(input_ids=rows.batch["input_ids"], attention_mask=rows.batch["attention_mask"], use_cache=False)
    x = t.inputs[memory.site][rows.batch["attention_mask"].bool()]
    return KeptInputs(x, project(memory.module, memory.main, x))


def train_shard(model, memory: SideMemory, rows: MemoryRows, kept: KeptInputs, mask: torch.Tensor,
                upper: UpperPass, hp: WiseHParams) -> dict:
    """WISE's inner loop on the shard being edited (`rows`: the edit rows): masked SGD, then the norm
    constraint. s_in comes from the edit rows' pass with W' on, s_out from `kept`."""
    alpha, beta, gamma = hp.act_margin
    weight = memory.current.weight.requires_grad_(True)
    optimiser = torch.optim.SGD([weight], lr=hp.edit_lr, weight_decay=hp.weight_decay)
    in_scope = rows.answer_positions & rows.is_edit_row[:, None]
    previous, memory.probe = None, weight
    try:
        for step in range(hp.n_iter):
            logits, targets = upper.logits(model, rows)
            s_in = memory.in_scores[in_scope]
            s_out = memory.score(weight, kept.x, kept.y)[1]
            nll = edit_row_nll(logits, targets)
            loss = nll + margin_loss(s_in, s_out, alpha, beta, gamma)
            if previous is not None and abs(previous - loss.item()) <= 1e-4 and loss.item() <= 0.02:
                break
            previous = loss.item()
            optimiser.zero_grad()
            loss.backward()
            weight.grad.mul_(mask)
            optimiser.step()
            with torch.no_grad():
                main = memory.main.float()
                weight.copy_(torch.clamp(weight, main - hp.norm_constraint, main + hp.norm_constraint))
    finally:
        memory.probe, memory.in_scores = None, None
        weight.requires_grad_(False)
    with torch.no_grad():
        reached = memory.in_scope_floor(weight, upper, model, rows)
    return {"steps": step + 1, "final_nll": round(nll.item(), 4), "final_loss": round(loss.item(), 4),
            "min_in_scope_score": round(reached, 4)}


def shard_mask(memory: SideMemory, hp: WiseHParams) -> torch.Tensor:
    """The random gradient mask of the shard being edited, drawn from the seed and the shard's number."""
    draw = torch.Generator(device="cpu").manual_seed(hp.seed * 1_000_003 + len(memory.shards))
    return (torch.rand(memory.main.shape, generator=draw) < hp.mask_ratio).to(memory.main.device)


def edit(model, tokenizer, requests, locality, hp: WiseHParams, memory: SideMemory | None = None) -> SideMemory:
    """Attach a side memory to `model` — or go on editing `memory`, attached to it by an earlier call — and
    edit `requests` into it, `hp.batch_size` at a time."""
    hp.check()
    if not locality:
        raise E2UError("wise: WISE needs locality prompts (kept questions: the retain or neighbour records) to "
                       "train its router, and this problem has none")
    started = time.perf_counter()
    arch = find_arch(model)
    layer = memory_layer(model, hp.layer, "wise")
    site = arch.mlp_out_path(layer)
    if memory is None:
        memory = SideMemory(model, site, getattr(model.config, "hidden_act", None) or "gelu_new")
    elif memory.site != site or not memory.attached:
        raise E2UError(f"wise: the memory to continue sits at {memory.site} (attached: {memory.attached}); "
                       f"these hyper-parameters edit {site}")
    device = input_device(model)
    upper = UpperPass(model, layer if hp.reuse_frozen else 0, tokenizer)
    mask = shard_mask(memory, hp)
    per_edit, done = list(memory.log.get("edits", [])), memory.edits_done
    for chunk in edit_chunks(requests, hp.batch_size):
        number = done
        kept = random.Random(f"wise:{hp.seed}:{number}").sample(
            list(locality), min(hp.locality_per_edit * len(chunk), len(locality)))
        rows = memory_rows(tokenizer, [(r.question, r.target) for r in chunk], [], device)
        kept_in = kept_inputs(model, memory, memory_rows(tokenizer, [], kept, device))
        upper.prepare(model, rows)
        with torch.enable_grad(), frozen_parameters(model):  # gradients for the memory only
            outcome = train_shard(model, memory, rows, kept_in, mask, upper, hp)
        memory.current.edits += 1
        memory.current.requests += [(r.question, r.target) for r in chunk]
        memory.current.threshold = min(memory.current.threshold, hp.act_ratio * outcome["min_in_scope_score"])
        done = memory.edits_done = done + 1
        events = []
        if done % hp.save_freq == 0:
            memory.close_shard()
            mask = shard_mask(memory, hp)
            events.append("shard closed")
        if done % hp.merge_freq == 0:
            count = len(memory.shards) if not hp.retrieve else hp.merge_freq // hp.save_freq
            merged = memory.merge(min(count, len(memory.shards)), hp.density)
            merged_rows = memory_rows(tokenizer, merged.requests, [], device)
            upper.prepare(model, merged_rows)
            with torch.no_grad():
                merged.threshold = hp.act_ratio * memory.in_scope_floor(merged.weight, upper, model, merged_rows)
            events.append(f"merged {count} shards (TIES), threshold {merged.threshold:.2f}")
        per_edit.append({"edit": number, "requests": len(chunk), **outcome, "events": events})
        log.info("WISE edit %d: %d steps, NLL %.3f, min in-scope score %.2f %s", number, outcome["steps"],
                 outcome["final_nll"], outcome["min_in_scope_score"], " ".join(events))
    memory.log = {"method": "wise", "layer": layer, "site": site, "shards": len(memory.shards),
                  "thresholds": [round(t, 4) for t in memory.meta()["thresholds"]], "edits": per_edit,
                  "shortcut": upper.states is not None,
                  "seconds": round(memory.log.get("seconds", 0) + time.perf_counter() - started, 2)}
    all_kept = memory_rows(tokenizer, [], locality, device)
    check_retain_routing(model, memory, all_kept, hp.max_retain_routing, "wise",
                         f"routing threshold (act_ratio {hp.act_ratio})", "raise act_ratio or act_margin")
    return memory


def apply(model, tokenizer, problem, hp: WiseHParams, memory: SideMemory | None = None) -> SideMemory:
    """The forget questions edited into refusals in a side memory (a new one, or `memory` continued),
    trained against the kept questions."""
    return edit(model, tokenizer, problem.edit_requests(), locality_pairs(model, tokenizer, problem, memory=memory),
                hp, memory)
