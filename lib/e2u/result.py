"""What a method returns (DESIGN section 2): the weight changes it made, or the adaptor it attached.

* `WeightDeltas`: editors and full-weight training change the model's own matrices; `deltas` maps
  each changed parameter's path to its total change, (d_out, d_in) for the editors' matrices (a LoRA baseline's:
  the merged adapter's change of each dense weight). `save` writes only those tensors, in float32, with the
  fingerprint of the model they were made on; `load` adds them to that model as the editors add theirs.
* `Adaptor`: memory-based editors (GRACE, WISE) leave the weights alone and attach a module that
  can be saved with the model's fingerprint, loaded again, and removed.

Both carry the method's `log`; `record()` is what the cell's result file stores about the change.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import torch

from e2u.errors import E2UError
from e2u.model.arch import is_conv1d
from e2u.model.fingerprinted import read_for_model, require_model, save_for_model

DELTAS_FORMAT = "e2u-weight-deltas/1"
EDITED_FORMAT = "e2u-edited-weights/1"  # the changed matrices as the change left them


@dataclass
class WeightDeltas:
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    log: dict = field(default_factory=dict)
    base: str = ""  # the fingerprint of the model the change was made on (`methods.run_method` notes it)

    def norms_by_layer(self, layers_path: str) -> dict[str, float]:
        """Frobenius norm of the change inside each decoder block (`layers_path.<i>`), by block index;
        changes outside the blocks (embeddings, final norm) under their own path."""
        squares: dict[str, float] = {}
        for path, delta in self.deltas.items():
            inside = path.startswith(layers_path + ".")
            where = path[len(layers_path) + 1 :].split(".")[0] if inside else path
            squares[where] = squares.get(where, 0.0) + float(delta.double().pow(2).sum())
        return {where: round(math.sqrt(total), 6) for where, total in squares.items()}

    @contextmanager
    def reverted(self, model) -> Iterator[None]:
        """The model before the change inside the block (each changed weight minus its delta, in float32),
        its own values back, bit for bit, after it."""
        targets = {path: stored_layout(model, path, delta) for path, delta in self.deltas.items()}
        kept = {path: parameter.detach().clone() for path, (parameter, _) in targets.items()}
        try:
            with torch.no_grad():
                for parameter, delta in targets.values():
                    parameter.copy_(parameter.float() - delta.to(parameter.device, torch.float32))
            yield
        finally:
            with torch.no_grad():
                for path, value in kept.items():
                    targets[path][0].copy_(value)

    def unedited(self, model) -> Iterator[None]:
        """A block in which `model` computes as before the change: the deltas reverted."""
        return self.reverted(model)

    def followed_by(self, later: "WeightDeltas") -> "WeightDeltas":
        """The total change of this change and then `later` (sequential unlearning's chunks): deltas summed
        per parameter, the chunks' logs kept in order under `chunk_logs`."""
        deltas = {path: delta.clone() for path, delta in self.deltas.items()}
        for path, delta in later.deltas.items():
            deltas[path] = deltas[path] + delta.to(deltas[path]) if path in deltas else delta
        logs = self.log.get("chunk_logs", [self.log]) + [later.log]
        return WeightDeltas(deltas, {**later.log, "chunk_logs": logs}, self.base or later.base)

    def apply(self, model) -> None:
        """Add every delta to its weight as the editors do (`editing.weights.add_to_weight`): the sum formed in
        float32, rounded once to the weight's dtype."""
        with torch.no_grad():
            for path, delta in self.deltas.items():
                parameter, update = stored_layout(model, path, delta)
                parameter.copy_(parameter.float() + update.to(parameter.device, torch.float32))

    def save(self, path: str | Path, base: str = "", edited=None) -> None:
        """One safetensors file with the base model's fingerprint (`base`, else the one noted when the change was
        made), written whole or not at all. Given `edited`, the model holding the change, the file holds its
        changed matrices as they are (loading reproduces that model bit for bit); else the deltas in float32
        (loading adds them once: within a float32 rounding of a model that received them in several steps)."""
        fingerprint = base or self.base
        if not fingerprint:
            raise E2UError(f"change file {path}: this change does not know the model it was made on; pass the base "
                           "model's fingerprint (model.load.model_fingerprint of the model before the change)")
        if edited is None:
            tensors, kind = {name: d.float() for name, d in self.deltas.items()}, DELTAS_FORMAT
        else:
            tensors, kind = {name: stored_layout(edited, name, d)[0].detach() for name, d in self.deltas.items()}, \
                EDITED_FORMAT
        save_for_model(path, tensors, {"format": kind, "fingerprint": fingerprint, "log": self.log})

    @classmethod
    def load(cls, model, path: str | Path) -> "WeightDeltas":
        """The change saved at `path`, applied to `model`, which must be the model it was made on; every tensor is
        checked against the model before any weight changes. Edited matrices are copied in, deltas added."""
        header, tensors = read_for_model(path, "change file", (DELTAS_FORMAT, EDITED_FORMAT))
        require_model(header, model, path, "change file")
        edited = header["format"] == EDITED_FORMAT
        targets = {}
        for name, tensor in tensors.items():
            try:
                parameter, update = stored_layout(model, name, tensor)
            except AttributeError:
                raise E2UError(f"change file {path}: the model has no weight {name!r}") from None
            if parameter.shape != update.shape or (edited and parameter.dtype != tensor.dtype):
                raise E2UError(f"change file {path}: {name} is {tensor.dtype} {tuple(update.shape)}, the model's "
                               f"weight {parameter.dtype} {tuple(parameter.shape)}")
            targets[name] = parameter, update
        if not edited:
            change = cls(tensors, header.get("log", {}), header["fingerprint"])
            change.apply(model)
            return change
        deltas = {}
        with torch.no_grad():
            for name, (parameter, weight) in targets.items():
                difference = weight.to(parameter.device, torch.float32) - parameter.float()
                deltas[name] = stored_layout(model, name, difference)[1]  # back in the change's own layout
                parameter.copy_(weight.to(parameter.device))
        return cls(deltas, header.get("log", {}), header["fingerprint"])

    def record(self, layers_path: str) -> dict:
        return {"kind": "weight_deltas", "norm_by_layer": self.norms_by_layer(layers_path),
                "parameters_changed": len(self.deltas)}


def stored_layout(model, path: str, delta: torch.Tensor) -> tuple[torch.nn.Parameter, torch.Tensor]:
    """(parameter, delta in its layout): a parameter's path as the training loop stores it, or a module's
    path with a (d_out, d_in) delta as the editors store it (transposed for a GPT-2 Conv1D)."""
    try:
        return model.get_parameter(path), delta
    except AttributeError:
        module = model.get_submodule(path)
        return module.weight, (delta.T if is_conv1d(module) else delta)


@runtime_checkable
class Adaptor(Protocol):
    """A module attached to the model by a memory-based editor."""
    log: dict

    def save(self, directory: str | Path) -> None: ...

    @classmethod
    def load(cls, model, directory: str | Path) -> "Adaptor": ...

    def remove(self) -> None: ...

    def record(self, layers_path: str) -> dict: ...

    def unedited(self, model) -> Iterator[None]: ...

    def followed_by(self, later: "Adaptor") -> "Adaptor": ...

