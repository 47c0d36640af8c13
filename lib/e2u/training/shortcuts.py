"""CPU shortcuts for `finetune`: the same answer loss, computed with less work.

When only the top blocks train (`train_layers`), the frozen lower blocks see the same input at every
epoch: their output is computed once per record (`FrozenStates`) and the forward pass starts from
it, with the lower blocks dropped from the model meanwhile. The prompt prefix a batch shares (the
chat template's system turn) runs through the trained blocks once, as a KV cache repeated over the
batch. The LM head runs only where an answer token is predicted. `shortcut_loss` checks each
shortcut against a forward pass from the token ids and drops it for a model where they differ.

Caveat: training only the top blocks puts the finetuned facts in those blocks alone, whereas TOFU
(Maini et al. 2024) trains every weight (`finetune.TOFU_HPARAMS`, for a GPU).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from transformers import DynamicCache

from e2u.model.arch import find_arch
from e2u.model.batching import IGNORE
from e2u.model.cache_keywords import cache_arguments
from e2u.model.hooks import trace
from e2u.model.load import input_device
from e2u.training.examples import Example, example_batch

log = logging.getLogger(__name__)

# The frozen lower-block outputs are kept in memory only below this size (the embedded run needs ~30 MB).
STATE_BUDGET_BYTES = 2 << 30
MIN_SHARED_PREFIX = 4  # shorter shared prefixes are not worth a second forward call


class FrozenStates:
    """The residual stream entering block `first` for each token sequence, computed once.

    Valid for any model whose embeddings and blocks below `first` equal those of the model that
    computed it: the target and retain runs share one store, since both start from the same base.
    """
    def __init__(self, first: int, share_prefix: bool = True):
        self.first = first
        self.share_prefix = share_prefix
        self._states: dict[tuple[int, ...], torch.Tensor] = {}

    def add(self, model: nn.Module, examples: Sequence[Example], pad_id: int, batch_size: int = 16) -> "FrozenStates":
        """Compute the states of the examples not yet stored (one forward pass stopping below `first`)."""
        missing = {e.tokens: e for e in examples if e.tokens not in self._states}
        missing = sorted(missing.values(), key=lambda e: e.length)
        device = input_device(model)
        below = find_arch(model).layer_path(self.first - 1)
        with torch.no_grad():
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                batch = example_batch(chunk, pad_id, device)
                with trace(model, [below], retain_output=True, stop=True) as traced:
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                hidden = traced.outputs[below]
                for row, e in enumerate(chunk):
                    self._states[e.tokens] = hidden[row, : e.length].clone()
        return self

    def batch(self, examples: Sequence[Example]) -> torch.Tensor:
        """Right-padded (zeros) states of `examples`: batch x length x hidden."""
        rows = [self._states[e.tokens] for e in examples]
        out = rows[0].new_zeros((len(rows), max(r.shape[0] for r in rows), rows[0].shape[-1]))
        for i, row in enumerate(rows):
            out[i, : row.shape[0]] = row
        return out


@contextmanager
def head_only_at(model: nn.Module, where: torch.Tensor) -> Iterator[None]:
    """Run the LM head only on the hidden states where `where` (batch x length, bool) is true.

    A pre-hook on the output embeddings hands it `hidden[where]` (N x d), so the model returns N x vocab
    logits: the head's cost (a quarter of a forward pass for a 135M model with 49k words) falls with it.
    """
    def select(module, args):
        return (args[0][where],) + tuple(args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def upper_blocks_only(model: nn.Module, first: int) -> Iterator[None]:
    """Temporarily drop blocks `0..first-1`: `model(inputs_embeds=h)` then starts from block `first`.

    The kept blocks' attention modules are renumbered from 0 meanwhile, so a fresh KV cache holds them.
    """
    arch = find_arch(model)
    parent_path, _, attr = arch.layers.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    blocks = getattr(parent, attr)
    kept = list(blocks)[first:]
    numbered = [(m, m.layer_idx) for block in kept for m in block.modules()
                if isinstance(getattr(m, "layer_idx", None), int)]
    setattr(parent, attr, nn.ModuleList(kept))
    try:
        for m, index in numbered:
            m.layer_idx = index - first
        yield
    finally:
        for m, index in numbered:
            m.layer_idx = index
        setattr(parent, attr, blocks)


def shared_prefix(examples: Sequence[Example]) -> int:
    """Length of the prompt prefix every example of a batch shares (the chat template's system turn)."""
    head = examples[0].prompt
    longest = min(len(e.prompt) for e in examples) - 1  # at least one prompt token stays per row
    for i in range(max(longest, 0)):
        if any(e.prompt[i] != head[i] for e in examples):
            return i
    return max(longest, 0)


def answer_logits(model: nn.Module, batch: Mapping[str, torch.Tensor], states: FrozenStates | None = None,
                  examples: Sequence[Example] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) at every position that predicts an answer token: N x vocab and N.

    With `states`, the forward pass starts from the stored input of the first trained block for
    `examples` (the rows of `batch`) instead of from the token ids.
    """
    labels = batch["labels"]
    where = torch.zeros_like(labels, dtype=torch.bool)
    where[:, :-1] = labels[:, 1:] != IGNORE
    targets = labels[:, 1:][where[:, :-1]]
    if states is not None:
        return _upper_forward(model, states, examples, batch["attention_mask"], where), targets
    with head_only_at(model, where):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return logits, targets


def _upper_forward(model, states: FrozenStates, examples, attention_mask, where) -> torch.Tensor:
    """Logits from the trained blocks, starting from the stored input of the first one.

    The prefix that every row shares (SmolLM2's system prompt: 24 of ~64 tokens) runs through the
    blocks once, as a KV cache repeated over the batch (gradients flow through it); the rows then
    run only their own tokens.
    """
    hidden = states.batch(examples).to(attention_mask.device)
    prefix = shared_prefix(examples) if states.share_prefix else 0
    with upper_blocks_only(model, states.first):
        if prefix < MIN_SHARED_PREFIX:
            with head_only_at(model, where):
                return model(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False).logits
        cache = DynamicCache()
        with head_only_at(model, where[:1, :prefix]):
            model(inputs_embeds=hidden[:1, :prefix], use_cache=True, **cache_arguments(model, cache))
        cache.batch_repeat_interleave(len(examples))
        with head_only_at(model, where[:, prefix:]):
            return model(inputs_embeds=hidden[:, prefix:], attention_mask=attention_mask, use_cache=True,
                         **cache_arguments(model, cache)).logits


class ShortcutLoss:
    """The loss `finetune` calls with the shortcuts on: mean NLL of a batch's answer tokens."""
    def __init__(self, states: FrozenStates | None, seconds: float = 0.0):
        self.states = states  # None: every step from the token ids (the LM head still runs at answers only)
        self.seconds = seconds  # spent computing and checking the states

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor],
                 examples: Sequence[Example]) -> torch.Tensor:
        logits, targets = answer_logits(model, batch, self.states, examples)
        return nn.functional.cross_entropy(logits.float(), targets)


def shortcut_loss(model: nn.Module, examples: Sequence[Example], first: int, pad_id: int, batch_size: int,
                  reuse_frozen: bool = True, states: FrozenStates | None = None) -> ShortcutLoss:
    """The shortcut loss for training blocks `first..` on `examples`: with the frozen blocks' stored
    output (`states`, filled in, or a new store) when `reuse_frozen`, they fit the budget and they agree
    with a forward pass from the token ids."""
    started = time.perf_counter()
    embeddings = model.get_input_embeddings().weight
    size = sum(e.length for e in examples) * embeddings.shape[1] * embeddings.element_size()
    usable = reuse_frozen and first > 0 and size <= STATE_BUDGET_BYTES
    if not usable or (states is not None and states.first != first):
        states = None
    elif states is None:
        states = FrozenStates(first)
    if states is not None:
        states = _check_states(model, examples, states.add(model, examples, pad_id, max(batch_size, 16)), pad_id)
    return ShortcutLoss(states, time.perf_counter() - started)


def describe(loss) -> dict:
    """What `finetune` logs about its loss: whether it started from frozen states, shared the prefix."""
    states = loss.states if isinstance(loss, ShortcutLoss) else None
    return {"reused_frozen_states": states is not None, "shared_prefix": bool(states and states.share_prefix),
            "frozen_states_seconds": round(loss.seconds, 2) if isinstance(loss, ShortcutLoss) else 0.0}


def _check_states(model, examples: Sequence[Example], states: FrozenStates, pad_id: int) -> FrozenStates | None:
    """Keep the shortcuts only where they give the full model's logits: starting from the stored block
    input (not for models that rescale or add to `inputs_embeds`, e.g. Gemma, GPT-2) and sharing the
    prefix through a KV cache (not where the cache cannot do it, e.g. a short sliding window)."""
    head = examples[0]
    partner = max(examples[1:] or examples, key=lambda e: shared_prefix([head, e]))
    chosen = [head, partner]
    batch = example_batch(chosen, pad_id, input_device(model))
    was_training = model.training
    share = states.share_prefix and shared_prefix(chosen) >= MIN_SHARED_PREFIX
    model.eval()
    try:
        with torch.no_grad():
            full, _ = answer_logits(model, batch)
            states.share_prefix = False
            agree = _close(full, answer_logits(model, batch, states, chosen)[0])
            if agree and share:
                states.share_prefix = True
                states.share_prefix = _close(full, answer_logits(model, batch, states, chosen)[0])
    except (TypeError, ValueError, RuntimeError, AttributeError) as exc:  # e.g. a forward without inputs_embeds
        log.info("finetune: cannot start from stored block inputs (%s)", str(exc).splitlines()[0])
        agree = False
    finally:
        model.train(was_training)
    return states if agree else None


def _close(reference: torch.Tensor, other: torch.Tensor) -> bool:
    return reference.shape == other.shape and bool(
        (reference - other).abs().max() <= 1e-3 * reference.abs().max().clamp(min=1.0))
