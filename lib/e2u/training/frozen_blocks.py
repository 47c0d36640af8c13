"""The frozen lower blocks of an unlearning run, computed once per row instead of at every step.

When only blocks `first..` train (the LoRA baselines' top 10 of 30; RMU's three), the blocks below see the
same rows at every epoch and give the same outputs: `FrozenLowerBlocks` runs them once for each row the run
can meet (a question with its true answer, with its refusal, a retain question with its answer), right-padded
to the longest row, and keeps the hidden state entering block `first`. During training, the embedding layer
hands that state to the model and the lower blocks pass it through untouched, so a forward pass (the model's,
the reference's with its adapter off, the curve's) costs only the upper blocks. Paths and hooks are unchanged:
a loss that traces a trained block (RMU) sees it where it was.

A row padded to length L is the stored row's first L positions: with right padding and a causal mask no
position sees the ones after it, so the padding positions that KL's term averages over agree too. A call
whose rows are not all stored runs the real blocks. `enable` checks one batch against the plain forward pass
and keeps the shortcut only where the logits agree (not for models that rescale the embeddings' output,
e.g. Gemma).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from e2u.model.arch import find_arch
from e2u.model.batching import padded
from e2u.model.load import input_device

log = logging.getLogger(__name__)

STATE_BUDGET_BYTES = 2 << 30  # kept in memory only below this size (an embedded cell needs ~10 MB)


class FrozenLowerBlocks:
    """The state entering block `first` for every row of a run, and the switch that uses it."""

    def __init__(self, model: nn.Module, first: int, pad_id: int, returns_tensor: bool = True):
        arch = find_arch(model)
        self.first, self.pad_id = first, pad_id
        self.returns_tensor = returns_tensor  # a block's output: its hidden state (True) or a tuple starting with it
        self.embedding = model.get_input_embeddings()
        self.blocks = [model.get_submodule(arch.layer_path(i)) for i in range(first)]
        self.length = 0
        self.states: dict[tuple[int, ...], torch.Tensor] = {}
        self.hits = self.misses = 0
        self.seconds = 0.0
        self._use_stored = False  # set by the embedding hook for the forward pass under way

    def add(self, model: nn.Module, rows: Sequence[Sequence[int]], batch_size: int = 16) -> "FrozenLowerBlocks":
        """Run the lower blocks once on `rows` (token ids), each right-padded to the longest."""
        started = time.perf_counter()
        distinct = sorted({tuple(r) for r in rows}, key=len)
        self.length = max(len(r) for r in distinct)
        counts = Counter(self._key(torch.tensor(r, dtype=torch.long)) for r in distinct)
        ambiguous = {k for k, n in counts.items() if n > 1}  # a row that is another plus trailing pad ids
        below = self.blocks[-1]
        seen: dict[str, torch.Tensor] = {}
        handle = below.register_forward_hook(
            lambda module, args, output: seen.__setitem__("h", output[0] if isinstance(output, tuple) else output))
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(distinct), batch_size):
                    chunk = distinct[start:start + batch_size]
                    ids, mask = padded([list(r) + [self.pad_id] * (self.length - len(r)) for r in chunk],
                                       self.pad_id, "right")
                    for row, tokens in enumerate(chunk):
                        mask[row, len(tokens):] = 0
                    model(input_ids=ids.to(input_device(model)), attention_mask=mask.to(input_device(model)),
                          use_cache=False)
                    for row in range(len(chunk)):
                        key = self._key(ids[row])
                        if key not in ambiguous:
                            self.states[key] = seen["h"][row].detach().clone()
        finally:
            handle.remove()
            model.train(training)
        self.seconds += time.perf_counter() - started
        return self

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.states.values())

    def _key(self, ids: torch.Tensor) -> tuple[int, ...]:
        row = ids.tolist()
        return tuple(row + [self.pad_id] * (self.length - len(row)))

    def _stored(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The stored states of a batch's rows (batch x length x hidden), None if one is missing or too long."""
        if input_ids.dim() != 2 or input_ids.shape[1] > self.length:
            return None
        keys = [self._key(row) for row in input_ids]
        if any(k not in self.states for k in keys):
            return None
        return torch.stack([self.states[k][: input_ids.shape[1]] for k in keys])

    @contextmanager
    def used(self) -> Iterator[None]:
        """Within: a forward pass on stored rows starts at block `first` (the lower blocks pass through)."""
        def embed(module, args, output):
            stored = self._stored(args[0]) if args else None
            self._use_stored = stored is not None
            self.hits += stored is not None
            self.misses += stored is None
            return stored.to(output.device, output.dtype) if stored is not None else output

        handles = [self.embedding.register_forward_hook(embed)]
        originals = [block.forward for block in self.blocks]
        for block, original in zip(self.blocks, originals):
            block.forward = _pass_through_when(self, original)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            for block in self.blocks:
                del block.forward  # back to the class's forward
            self._use_stored = False

    def describe(self) -> dict:
        return {"first_trained_block": self.first, "rows": len(self.states), "seconds": round(self.seconds, 2),
                "passes_from_stored_states": self.hits, "passes_through_every_block": self.misses}


def _pass_through_when(store: FrozenLowerBlocks, original):
    """A block's forward that returns its input hidden state while the store supplies the pass."""
    def forward(*args, **kwargs):
        if not store._use_stored:
            return original(*args, **kwargs)
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if store.returns_tensor else (hidden,)
    return forward


def frozen_lower_blocks(model: nn.Module, first: int, pad_id: int, rows: Sequence[Sequence[int]],
                        check_batch: dict[str, torch.Tensor]) -> tuple[FrozenLowerBlocks | None, str]:
    """The store for a run training blocks `first..` on `rows`, or None and why not."""
    if first <= 0:
        return None, "every block trains"
    hidden = model.get_input_embeddings().weight.shape[1]
    longest = max(len(r) for r in rows)
    size = len({tuple(r) for r in rows}) * longest * hidden * 4
    if size > STATE_BUDGET_BYTES:
        return None, f"the stored states would take {size / 2**30:.1f} GiB"
    below = model.get_submodule(find_arch(model).layer_path(first - 1))
    store = FrozenLowerBlocks(model, first, pad_id, _block_returns_tensor(model, below, check_batch)).add(model, rows)
    if not _agrees(model, store, check_batch):
        return None, "the model's output from stored states differs from its plain forward pass"
    return store, ""


def _block_returns_tensor(model: nn.Module, block: nn.Module, batch: dict[str, torch.Tensor]) -> bool:
    kinds = []
    handle = block.register_forward_hook(lambda module, args, output: kinds.append(not isinstance(output, tuple)))
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1], use_cache=False)
    finally:
        handle.remove()
    return kinds[0]


def _agrees(model: nn.Module, store: FrozenLowerBlocks, batch: dict[str, torch.Tensor]) -> bool:
    training = model.training
    model.eval()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    try:
        with torch.no_grad():
            plain = model(**inputs).logits.float()
            with store.used():
                shortcut = model(**inputs).logits.float()
    finally:
        model.train(training)
    store.hits = store.misses = 0
    close = bool((plain - shortcut).abs().max() <= 1e-4 * plain.abs().max().clamp(min=1.0))
    if not close:
        log.info("unlearning: frozen lower blocks not reused (stored states disagree with the plain pass)")
    return close
