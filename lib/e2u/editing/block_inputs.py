"""The hidden states entering the edited block, computed once: nothing below it can see delta.

`values.optimise_value`'s forward pass runs every block at every step; the blocks below the one that
holds the edited module compute the same states each time. `BlockInputs.build` runs them once (no
gradient) and `BlockInputs.starting` makes them pass their input through while the edited block reads
the stored states, so a step pays only for the blocks that see delta (ROME at layer 5 of 30 skips a
sixth of them). Used by batched_values.optimise_values; tests/editing/test_values.py checks it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from e2u.model.arch import find_arch


@dataclass
class BlockInputs:
    """The hidden states entering block `start` (the one holding the edited module) for every row's
    suffix, computed once; while `starting` is active the blocks below `start` pass their input
    through and block `start` reads these instead, so a step pays only for the blocks that see delta.

    Computed for every row at the width of the longest suffix: right padding and causal attention
    leave a real token's states unchanged when a later step runs fewer, narrower rows.
    """
    start: int
    blocks: object  # the model's ModuleList of decoder blocks, or None (nothing to skip)
    hidden: torch.Tensor | None  # (all rows, widest suffix, hidden)

    @classmethod
    def none(cls) -> "BlockInputs":
        return cls(0, None, None)

    @classmethod
    @torch.no_grad()
    def build(cls, model, site_path: str, prefix, batch: dict) -> "BlockInputs":
        """Run `prefix` (batched_values._PrefixCache) on `batch` up to the edited block; keep its input."""
        arch = find_arch(model)
        start = _block_of(arch.layers, arch.n_layers, site_path)
        blocks = model.get_submodule(arch.layers)
        if not start:  # the site is in the first block (or outside the blocks): nothing below it
            return cls.none()
        found: dict = {}

        def capture(module, args, kwargs):
            found["hidden"] = args[0] if args else kwargs["hidden_states"]
            raise _Captured

        def check(module, args, output):
            found["tensor_out"] = isinstance(output, torch.Tensor)

        handles = [blocks[start].register_forward_pre_hook(capture, with_kwargs=True),
                   blocks[0].register_forward_hook(check)]
        try:
            prefix.run(model, batch)
        except _Captured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if not found.get("tensor_out"):  # blocks returning tuples (older transformers): run them all
            return cls.none()
        return cls(start, blocks, found["hidden"].detach())

    @contextmanager
    def starting(self, model, batch: dict):
        if self.blocks is None:
            yield
            return
        rows, width = batch["prefix_rows"], batch["ids"].shape[1]

        def substitute(module, args, kwargs):
            hidden = self.hidden[rows.to(self.hidden.device), :width]
            return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

        skipped = list(self.blocks)[: self.start]
        own = [block.__dict__.get("forward") for block in skipped]  # accelerate's device hooks live here
        for block in skipped:
            block.forward = _pass_through
        handle = self.blocks[self.start].register_forward_pre_hook(substitute, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            for block, forward in zip(skipped, own):
                if forward is None:
                    del block.forward  # back to the class's forward
                else:
                    block.forward = forward


class _Captured(Exception):
    """Ends `BlockInputs.build`'s pass once the block's input is seen."""


def _pass_through(hidden_states, *args, **kwargs):
    return hidden_states


def _block_of(layers_path: str, n_layers: int, site_path: str) -> int:
    """The index of the decoder block that holds module `site_path` (0 when none does)."""
    for index in range(n_layers):
        block = f"{layers_path}.{index}"
        if site_path == block or site_path.startswith(block + "."):
            return index
    return 0
