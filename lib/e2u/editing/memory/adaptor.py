"""What GRACE and WISE share: a memory attached to one MLP output projection by a forward hook.

The model's weights are never touched. A forward hook on the projection sees the module's input x and
output y = W x at every position of every forward pass — the prompt's prefill and each token that
`generate` (or `greedy.greedy_continue`) decodes — and `route(x, y)` decides per position whether the
memory answers instead. So what is evaluated is what a user gets when the edited model generates.

* `save(path)`: one safetensors file; its metadata holds the method, the site and the fingerprint of the
  model it was made for (`model.load.model_fingerprint`, unchanged by the hook).
* `load_adaptor(model, path)`: refuses a file made for another model, naming both fingerprints.
* `remove()`: unhooks; the model computes exactly what it computed before.
* `recording()`: collects the routing decisions of the forward passes inside the block (`routing.py`).
* `valid_positions(x)` and `continues_cache`: which positions of the projection's input are tokens, not
  padding, and whether the pass continues a KV cache (a decoding step, answer tokens after a prefill) or
  starts one (a prefill, a full pass) — noted from the arguments of the forward pass of the model's body
  under way by a pre-hook, forgotten by a hook that always runs; outside one (a pass started at a block)
  every position counts and the pass starts afresh.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from e2u.errors import E2UError
from e2u.model.cache_keywords import layer_call_cache
from e2u.model.fingerprinted import read_for_model, require_model, save_for_model
from e2u.model.load import model_fingerprint

FORMAT = "e2u-memory-adaptor/1"


class MemoryAdaptor:
    """Base class: a subclass defines `kind`, `route`, `tensors`, `meta` and `restore`."""
    kind = ""

    def __init__(self, model: torch.nn.Module, site: str, log: dict | None = None):
        self.site = site
        self.fingerprint = model_fingerprint(model)
        self.module = model.get_submodule(site)
        self.log = dict(log or {})
        self._bypassed = False
        self._recordings: list[torch.Tensor] | None = None
        self._attention_mask: torch.Tensor | None = None
        self.continues_cache = False
        self._handle = self.module.register_forward_hook(self._hook)
        body = getattr(model, "base_model", model)  # evaluation calls the body alone after a prefill
        self._pass_handles = [body.register_forward_pre_hook(self._note_pass, with_kwargs=True),
                              body.register_forward_hook(self._forget_pass, always_call=True)]

    # --- what a subclass provides -------------------------------------------------------------
    def route(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, routed): the projection's output with the memory's answer where it applies, and a
        (batch, length) bool tensor saying where it did."""
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def meta(self) -> dict:
        return {}

    @classmethod
    def restore(cls, model, site: str, tensors: dict[str, torch.Tensor], meta: dict, log: dict) -> "MemoryAdaptor":
        raise NotImplementedError

    # --- the hook ------------------------------------------------------------------------------
    def _hook(self, module, args, output):
        if self._bypassed:
            return output
        x = args[0]
        y = output[0] if isinstance(output, tuple) else output
        new, routed = self.route(x, y)
        if self._recordings is not None:
            self._recordings.append(routed.detach().cpu())
        return (new, *output[1:]) if isinstance(output, tuple) else new

    def _note_pass(self, module, args, kwargs):
        self._attention_mask = kwargs.get("attention_mask")
        past = layer_call_cache(kwargs)
        length = past.get_seq_length() if hasattr(past, "get_seq_length") else len(past or ())
        self.continues_cache = length > 0

    def _forget_pass(self, module, args, output):
        self._attention_mask, self.continues_cache = None, False

    def valid_positions(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length) bool: the positions of `x` that hold tokens. With a KV cache the attention
        mask covers the past and the new positions; the new ones are its last `length` columns."""
        mask, shape = self._attention_mask, x.shape[:-1]
        if mask is None or mask.dim() != 2 or mask.shape[0] != shape[0] or mask.shape[1] < shape[1]:
            return torch.ones(shape, dtype=torch.bool, device=x.device)
        return mask[:, mask.shape[1] - shape[1]:].to(device=x.device, dtype=torch.bool)

    @contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """The routing mask of every forward pass run inside the block, in order."""
        self._recordings = []
        try:
            yield self._recordings
        finally:
            self._recordings = None

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """The unedited projection inside the block (the memory's keys and starting values are read so)."""
        self._bypassed = True
        try:
            yield
        finally:
            self._bypassed = False

    def unedited(self, model) -> Iterator[None]:
        """A block in which `model` computes as before the edit: the memory bypassed."""
        return self.bypassed()

    def followed_by(self, later: "MemoryAdaptor") -> "MemoryAdaptor":
        """The change after a later chunk of sequential unlearning: that chunk went on editing this memory."""
        return later

    def reattached(self, model) -> "MemoryAdaptor":
        """This memory attached to `model` again (after a failed edit detached it), as a restored copy."""
        return type(self).restore(model, self.site, self.tensors(), self.meta(), self.log)

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def remove(self) -> None:
        """Detach from the model: its outputs are again exactly those of the unedited weights."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
            for handle in self._pass_handles:
                handle.remove()
            self._pass_handles = []
            self._forget_pass(None, None, None)

    # --- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One safetensors file (written to a temporary name, then renamed)."""
        header = {"format": FORMAT, "kind": self.kind, "site": self.site, "fingerprint": self.fingerprint,
                  "meta": self.meta(), "log": self.log}
        save_for_model(path, self.tensors(), header)

    @classmethod
    def load(cls, model, path: str | Path) -> "MemoryAdaptor":
        """The adaptor saved at `path`, which must hold this class's kind, attached to `model`."""
        return attach_saved(model, path, {cls.kind: cls})

    def record(self, layers_path: str) -> dict:
        """What the cell's result file stores about the change."""
        return {"kind": "adaptor", "adaptor": self.kind, "site": self.site,
                **{k: v for k, v in self.meta().items() if not isinstance(v, (list, dict))}}


def read_adaptor_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a saved adaptor; a clear error for anything else."""
    return read_for_model(path, "adaptor file", (FORMAT,))


def attach_saved(model: torch.nn.Module, path: str | Path, kinds: dict[str, type]) -> MemoryAdaptor:
    """Attach the adaptor saved at `path` to `model`, which must be the model it was made for; `kinds`: the
    adaptor classes the file may hold, by kind."""
    header, tensors = read_adaptor_file(path)
    kind = header.get("kind")
    if kind not in kinds:
        expected = f"a {next(iter(kinds))} one" if len(kinds) == 1 else f"one of {sorted(kinds)}"
        raise E2UError(f"adaptor file {path}: holds a {kind} adaptor, not {expected}")
    require_model(header, model, path, f"{kind} adaptor file")
    try:
        model.get_submodule(header["site"])
    except AttributeError:
        raise E2UError(f"adaptor file {path}: the model has no module {header['site']!r}") from None
    return kinds[kind].restore(model, header["site"], tensors, header.get("meta", {}), header.get("log", {}))
