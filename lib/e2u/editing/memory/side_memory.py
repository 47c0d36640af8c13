"""WISE's side memory (Wang et al., 2024): knowledge shards beside one MLP output projection, and the router that
sends each position to the shard whose activation score passes its threshold (WISE eq. 4; `wise.py` edits it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.activations import ACT2FN

from e2u.editing.memory.adaptor import MemoryAdaptor
from e2u.editing.memory.rows import MemoryRows, UpperPass
from e2u.editing.memory.site import project
from e2u.editing.memory.ties import ties_merge


def last_token(valid: torch.Tensor) -> torch.Tensor:
    """(batch,) index of each row's last valid position (0 for a row of padding alone)."""
    positions = torch.arange(valid.shape[1], device=valid.device)
    return (positions * valid).amax(dim=1)


@dataclass
class Shard:
    weight: torch.Tensor
    threshold: float
    edits: int
    requests: list = field(default_factory=list)  # (question, target) of its edits, to measure a merge on


class SideMemory(MemoryAdaptor):
    """WISE's side memories (closed shards and the one being edited), attached at `site`."""
    kind = "wise"

    def __init__(self, model, site: str, act: str, log: dict | None = None):
        super().__init__(model, site, log)
        self.act_name = act
        self.act = ACT2FN[act]
        self.main = self.module.weight.detach()
        self.shards: list[Shard] = []
        self.current = Shard(self.main.float().clone(), float("inf"), 0)
        self.probe: torch.Tensor | None = None  # while set, this weight answers everywhere (training, calibration)
        self.in_scores: torch.Tensor | None = None  # ... and the last forward's scores under it
        self.edits_done = 0  # edits made into this memory, over every call of `edit`

    def memories(self) -> list[Shard]:
        return self.shards + ([self.current] if self.current.edits else [])

    def score(self, weight, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """(W' x, ||act(W' x) - act(W x)||) per position (WISE eq. 4 in the reference implementation's form, with
        the activation; the paper's is ||x (W' - W)||)."""
        side = project(self.module, weight, x)
        return side, torch.linalg.vector_norm(self.act(side.float()) - self.act(y.float()), dim=-1)

    def route(self, x, y):
        """A pass that starts a sequence (a prefill) goes to the memory row by row, decided at the row's
        last token, and the chosen memory answers at every position of the row, as in training, where it
        is on at every prompt position; a pass that continues a cache (each decoded token, answer tokens
        after a prompt) is decided position by position. Among memories above their thresholds the
        highest score wins."""
        if self.probe is not None:  # the weight being trained or measured answers everywhere; its scores are kept
            side, self.in_scores = self.score(self.probe, x, y)
            return side.to(y.dtype), torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        last = None if self.continues_cache else last_token(self.valid_positions(x))
        best = torch.full(x.shape[:-1], -1.0, device=x.device)
        out = y
        for memory in self.memories():
            side, score = self.score(memory.weight, x, y)
            if last is not None:
                score = score.gather(1, last[:, None]).expand_as(score)
            wins = (score > memory.threshold) & (score > best)
            out = torch.where(wins[..., None], side.to(y.dtype), out)
            best = torch.where(wins, score, best)
        return out, best >= 0

    def close_shard(self) -> None:
        self.shards.append(self.current)
        self.current = Shard(self.main.float().clone(), float("inf"), 0)

    def merge(self, count: int, density: float) -> Shard:
        """TIES-merge the last `count` closed shards into one; its threshold is for the caller to measure."""
        group, self.shards = self.shards[-count:], self.shards[:-count]
        weight = ties_merge(self.main.float(), [s.weight for s in group], density)
        merged = Shard(weight, float("inf"), sum(s.edits for s in group), [r for s in group for r in s.requests])
        self.shards.append(merged)
        return merged

    def in_scope_floor(self, weight: torch.Tensor, upper: UpperPass, model, rows: MemoryRows) -> float:
        """The smallest score of `weight` at the edit rows' answer positions (step 3's min)."""
        self.probe = weight
        try:
            with torch.no_grad():
                upper.logits(model, rows)
            return float(self.in_scores[rows.answer_positions & rows.is_edit_row[:, None]].min())
        finally:
            self.probe, self.in_scores = None, None

    def tensors(self):
        out = {f"shard{i}": s.weight for i, s in enumerate(self.shards)}
        if self.current.edits:
            out["current"] = self.current.weight
        return out

    def meta(self):
        return {"act": self.act_name, "shards": len(self.shards), "current_edits": self.current.edits,
                "edits_done": self.edits_done,
                "thresholds": [s.threshold for s in self.memories()],
                "shard_edits": [s.edits for s in self.shards],
                "shard_requests": [s.requests for s in self.memories()]}

    @classmethod
    def restore(cls, model, site, tensors, meta, log):
        memory = cls(model, site, meta["act"], log)
        device = memory.main.device
        thresholds, edits = meta["thresholds"], meta["shard_edits"]
        requests = [[tuple(r) for r in part] for part in meta.get("shard_requests", [])]
        requests += [[] for _ in range(meta["shards"] + 1 - len(requests))]
        memory.shards = [Shard(tensors[f"shard{i}"].to(device), thresholds[i], edits[i], requests[i])
                         for i in range(meta["shards"])]
        if meta["current_edits"]:
            memory.current = Shard(tensors["current"].to(device), thresholds[-1], meta["current_edits"],
                                   requests[meta["shards"]])
        memory.edits_done = meta.get("edits_done", sum(edits) + meta["current_edits"])
        return memory
