"""GRACE: a discrete key-value codebook on one MLP projection (Hartvigsen et al., 2023), as an unlearner.

The codebook holds entries (key k_i, value v_i, deferral radius eps_i, label y_i). At every position t
of every forward pass, with x_t the projection's input (GRACE eq. 2):

    i* = argmin_i ||x_t - k_i||,   output_t = v_i*  if ||x_t - k_i*|| <= eps_i*,  else W x_t.

Editing one request (GRACE algorithm 1), for each of its answer positions (`memory_rows`), in order:
  1. the key is x_t, the label the answer token that position must predict;
  2. no entry within eps_init + eps_i*      -> add (x_t, eps_init);
     nearest entry has another label          -> add, and split: eps_i* = eps_new = d / 2;
     nearest entry has the same label         -> expand it: eps_i* = max(eps_i*, d) ("coverage");
  3. the values of the entries this request uses are trained by Adam on the NLL of the refusal.

Ours, where the reference differs: a key per answer position (the reference keys the last prompt token
only, which greedy generation passes through once: reference/editing.md A.4), values started from the
projection's own output there ("warm"; the reference's `cold` is U[0,1)), and eps_init set as a
fraction of the median key norm at answer positions of the kept questions (`eps_ratio`), so that one
setting means the same on every model; `eps` gives it in the keys' own units instead, as the reference
does. The chosen numbers are logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from e2u.editing.memory.adaptor import MemoryAdaptor
from e2u.editing.memory.routing import check_retain_routing
from e2u.editing.memory.rows import MemoryRows, UpperPass, edit_chunks, edit_row_nll, locality_pairs, memory_rows
from e2u.editing.memory.site import MemoryHParams, memory_layer
from e2u.editing.values import frozen_parameters
from e2u.errors import E2UError
from e2u.hparams import real_number
from e2u.model.arch import find_arch
from e2u.model.hooks import trace
from e2u.model.load import input_device

log = logging.getLogger(__name__)


@dataclass
class GraceHParams(MemoryHParams):
    eps_ratio: float = 0.5  # eps_init = eps_ratio x the median key norm at kept answer positions
    eps: float = 0.0  # > 0: eps_init itself, in the keys' own units (EasyEdit's `eps`); eps_ratio is then unused
    early_stop_loss: float = 0.01
    value_init: str = "warm"  # "warm": the projection's own output; "cold": U[0,1) as the reference

    METHOD = "grace"
    ALIASES = {"inner_layer": "layer"}

    def extra_rules(self) -> dict:
        return {"eps_ratio": (real_number(self.eps_ratio) and self.eps_ratio > 0, "a number > 0"),
                "eps": (real_number(self.eps) and self.eps >= 0, "a radius >= 0 (0: eps_ratio sets it)"),
                "early_stop_loss": (real_number(self.early_stop_loss) and self.early_stop_loss >= 0, "a number >= 0"),
                "value_init": (self.value_init in ("warm", "cold"), "'warm' or 'cold'")}


# Ours: an expanded radius covers the new key with a relative margin instead of exactly. At exactly d the key sits
# on the boundary, and the rounding of batched, left-padded generation (~1e-4 relative in the hidden states) put
# it outside: on the embedded model the second of two edits left the memory mid-refusal when its question was
# generated in a batch, and refused when generated alone (the distances equalled the radii to 3 decimals).
EXPAND_MARGIN = 1e-3


class Codebook(MemoryAdaptor):
    """GRACE's codebook, attached to the projection at `site`."""
    kind = "grace"

    def __init__(self, model, site: str, d_in: int, d_out: int, log: dict | None = None):
        super().__init__(model, site, log)
        device = self.module.weight.device  # the projection's own device (a sharded model spreads its blocks)
        self.keys = torch.zeros(0, d_in, device=device)
        self.values = torch.nn.Parameter(torch.zeros(0, d_out, device=device))
        self.radii = torch.zeros(0, device=device)
        self.labels = torch.zeros(0, dtype=torch.long, device=device)
        self.edit_ids = torch.zeros(0, dtype=torch.long, device=device)

    def route(self, x, y):
        """GRACE eq. 2 at every position."""
        flat = x.reshape(-1, x.shape[-1]).float()
        if len(self.keys) == 0:
            return y, torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
        distance, nearest = torch.cdist(flat, self.keys).min(dim=1)
        routed = (distance <= self.radii[nearest]).reshape(x.shape[:-1])
        values = self.values[nearest].reshape(*x.shape[:-1], -1).to(y.dtype)
        return torch.where(routed[..., None], values, y), routed

    def add_key(self, key: torch.Tensor, label: int, value: torch.Tensor, eps_init: float, edit: int) -> int:
        """GRACE's rules for one new key; the index of the entry whose value the edit trains."""
        if len(self.keys):
            distances = torch.linalg.vector_norm(self.keys - key, dim=1)
            d, i = distances.min(0)
            d, i = float(d), int(i)
            if d <= eps_init + float(self.radii[i]):
                if int(self.labels[i]) == label:
                    self.radii[i] = max(float(self.radii[i]), d * (1 + EXPAND_MARGIN))  # expand: coverage
                    return i
                self.radii[i] = d / 2 - 1e-5  # split the difference between two labels
                return self._append(key, value, d / 2, label, edit)
        return self._append(key, value, eps_init, label, edit)

    def _append(self, key, value, radius: float, label: int, edit: int) -> int:
        device = self.keys.device
        self.keys = torch.cat([self.keys, key[None].float()])
        self.values = torch.nn.Parameter(torch.cat([self.values.detach(), value[None].float()]))
        self.radii = torch.cat([self.radii, torch.tensor([radius], device=device)])
        self.labels = torch.cat([self.labels, torch.tensor([label], device=device)])
        self.edit_ids = torch.cat([self.edit_ids, torch.tensor([edit], device=device)])
        return len(self.keys) - 1

    def tensors(self):
        return {"keys": self.keys, "values": self.values.detach(), "radii": self.radii, "labels": self.labels,
                "edit_ids": self.edit_ids}

    def meta(self):
        return {"entries": len(self.keys), "edits": int(self.edit_ids.max()) + 1 if len(self.edit_ids) else 0}

    @classmethod
    def restore(cls, model, site, tensors, meta, log):
        book = cls(model, site, tensors["keys"].shape[1], tensors["values"].shape[1], log)
        device = book.keys.device
        book.keys = tensors["keys"].to(device)
        book.values = torch.nn.Parameter(tensors["values"].to(device), requires_grad=False)
        book.radii, book.labels, book.edit_ids = (tensors[n].to(device) for n in ("radii", "labels", "edit_ids"))
        return book


def answer_keys(model, codebook: Codebook, rows: MemoryRows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keys, labels, unedited outputs) at the edit rows' answer positions, in order."""
    with torch.no_grad(), codebook.bypassed(), trace(model, [codebook.site], retain_input=True, retain_output=True) as t:
        model(input_ids=rows.batch["input_ids"], attention_mask=rows.batch["attention_mask"], use_cache=False)
    where = rows.answer_positions & rows.is_edit_row[:, None]
    labels = rows.batch["labels"][:, 1:][where[:, :-1]]
    return t.inputs[codebook.site][where].float(), labels, t.outputs[codebook.site][where].float()


def key_norm_median(model, codebook: Codebook, kept: MemoryRows) -> float:
    """Median norm of the projection's input at the kept rows' answer positions: the radius's unit."""
    with torch.no_grad(), codebook.bypassed(), trace(model, [codebook.site], retain_input=True) as t:
        model(input_ids=kept.batch["input_ids"], attention_mask=kept.batch["attention_mask"], use_cache=False)
    return float(torch.linalg.vector_norm(t.inputs[codebook.site][kept.answer_positions].float(), dim=-1).median())


def train_values(model, codebook: Codebook, rows: MemoryRows, entries: list[int], upper: UpperPass,
                 hp: GraceHParams) -> dict:
    """Adam on the values of `entries` (the others stay fixed): the NLL of the edit rows' refusals."""
    chosen = torch.tensor(sorted(set(entries)), device=codebook.keys.device)
    trainable = codebook.values.detach()[chosen].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([trainable], lr=hp.edit_lr)
    frozen = codebook.values.detach()
    nll = torch.tensor(float("nan"))
    for step in range(hp.n_iter):
        codebook.values = frozen.index_put((chosen,), trainable)  # differentiable in `trainable`
        logits, targets = upper.logits(model, rows)
        nll = edit_row_nll(logits, targets)
        if nll.item() <= hp.early_stop_loss:
            break
        optimiser.zero_grad()
        nll.backward()
        optimiser.step()
    codebook.values = torch.nn.Parameter(frozen.index_put((chosen,), trainable.detach()), requires_grad=False)
    return {"steps": step + 1, "final_nll": round(nll.item(), 4)}


def edit(model, tokenizer, requests, locality, hp: GraceHParams, codebook: Codebook | None = None) -> Codebook:
    """Attach a codebook to `model` — or go on editing `codebook`, attached to it by an earlier call — and
    edit `requests` into it, `hp.batch_size` at a time."""
    hp.check()
    started = time.perf_counter()
    arch = find_arch(model)
    layer = memory_layer(model, hp.layer, "grace")
    site = arch.mlp_out_path(layer)
    if not locality:
        raise E2UError("grace: the radius is set from the key norms of kept questions, and this problem has none "
                       "(give retain or neighbour records)")
    if codebook is None:
        codebook = Codebook(model, site, arch.key_size, arch.hidden_size)
    elif codebook.site != site or not codebook.attached:
        raise E2UError(f"grace: the codebook to continue sits at {codebook.site} (attached: {codebook.attached}); "
                       f"these hyper-parameters edit {site}")
    device = input_device(model)
    upper = UpperPass(model, layer if hp.reuse_frozen else 0, tokenizer)
    kept = memory_rows(tokenizer, [], locality, device)
    norm = key_norm_median(model, codebook, kept)
    eps_init = hp.eps if hp.eps > 0 else hp.eps_ratio * norm
    per_edit = list(codebook.log.get("edits", []))
    first = len(per_edit)
    generator = torch.Generator(device="cpu").manual_seed(hp.seed * 1_000_003 + first)
    for number, chunk in enumerate(edit_chunks(requests, hp.batch_size), start=first):
        rows = memory_rows(tokenizer, [(r.question, r.target) for r in chunk], [], device)
        keys, labels, outputs = answer_keys(model, codebook, rows)
        entries = []
        for key, label, output in zip(keys, labels.tolist(), outputs):
            start = output if hp.value_init == "warm" else torch.rand(output.shape, generator=generator).to(output.device)
            entries.append(codebook.add_key(key, label, start, eps_init, number))
        upper.prepare(model, rows)
        with torch.enable_grad(), frozen_parameters(model):  # gradients for the memory only
            outcome = train_values(model, codebook, rows, entries, upper, hp)
        per_edit.append({"edit": number, "requests": len(chunk), "keys": len(keys), **outcome})
        log.info("GRACE edit %d: %d keys, %d entries in all, NLL %.3f", number, len(keys), len(codebook.keys),
                 outcome["final_nll"])
    codebook.log = {"method": "grace", "layer": layer, "site": site, "key_norm_median": round(norm, 4),
                    "eps_init": round(eps_init, 4), "entries": len(codebook.keys),
                    "radius_median": round(float(codebook.radii.median()), 4) if len(codebook.radii) else None,
                    "edits": per_edit, "shortcut": upper.states is not None,
                    "seconds": round(codebook.log.get("seconds", 0) + time.perf_counter() - started, 2)}
    radius = f"radius eps {hp.eps}" if hp.eps > 0 else f"radius eps_ratio {hp.eps_ratio}"
    check_retain_routing(model, codebook, kept, hp.max_retain_routing, "grace", radius,
                         "lower eps" if hp.eps > 0 else "lower eps_ratio")
    return codebook


def apply(model, tokenizer, problem, hp: GraceHParams, memory: Codebook | None = None) -> Codebook:
    """The forget questions edited into refusals in a codebook (a new one, or `memory` continued); the kept
    questions set the radius scale."""
    return edit(model, tokenizer, problem.edit_requests(), locality_pairs(model, tokenizer, problem, memory=memory),
                hp, memory)
