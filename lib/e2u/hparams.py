"""Typed hyper-parameters: dataclass defaults, overridden by per-family YAML, then by the study cell.

Lookup order for method `m` on a model: the dataclass defaults < `hparams/m.yaml: default`
< `model_type: <config.model_type>` < `model: <e2u model name>` (found by what the model is, whatever its
name: `model/identity.py`) < the cell's own overrides.
Unknown keys are an error naming the key and the allowed ones; reference-implementation names
(e.g. `layers`, `v_lr`) are accepted through each class's `ALIASES`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from e2u.errors import E2UError

DEFAULTS_DIR = Path(__file__).with_name("hparams")


def family_defaults(method: str, model_type: str | None, model_name: str | None) -> dict:
    path = DEFAULTS_DIR / f"{method}.yaml"
    if not path.is_file():
        return {}
    table = yaml.safe_load(path.read_text()) or {}
    merged = dict(table.get("default") or {})
    merged.update((table.get("model_type") or {}).get(model_type or "", {}) or {})
    merged.update((table.get("model") or {}).get((model_name or "").lower(), {}) or {})
    return merged


def build_hparams(cls, values: dict[str, Any], where: str):
    """Instantiate dataclass `cls` from `values`, checking names and types; `where` prefixes errors."""
    aliases, refused = getattr(cls, "ALIASES", {}), getattr(cls, "REFUSED", {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    clean = {}
    for key, value in (values or {}).items():
        if key in refused:
            raise E2UError(f"{where}: {key}: not accepted: {refused[key]}")
        name = aliases.get(key, key)
        if name not in fields:
            allowed = sorted(set(fields) | set(aliases))
            raise E2UError(f"{where}: {key}: expected one of the hyper-parameters {', '.join(allowed)}; "
                           f"got an unknown key")
        clean[name] = _coerce(value, fields[name], where)
    hp = cls(**clean)
    return hp.check(where) if isinstance(hp, CheckedHParams) else hp


def _coerce(value, field, where):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind == "float" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "str" and isinstance(value, str):
            return value
    except ValueError:
        pass
    if kind in ("float", "int", "bool", "str"):
        raise E2UError(f"{where}: {field.name}: expected {kind}, got {value!r}")
    return value


def real_number(value) -> bool:
    """A finite int or float (not a bool): what a numeric hyper-parameter may be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CheckedHParams:
    """The one way hyper-parameters are checked: `rules()` gives, per field, whether its value is in range (a
    predicate on the value, or its outcome) and what is expected; `check` raises, for the first that fails,
    `<method>: <field>: expected <what>, got <value>`."""

    METHOD = ""  # the name an error starts with when no caller names it

    def rules(self) -> dict:
        return {}

    def check(self, where: str = ""):
        """Raise an `E2UError` naming the first out-of-range field; return self."""
        for name, (ok, expected) in self.rules().items():
            value = getattr(self, name)
            if not (ok(value) if callable(ok) else ok):
                raise E2UError(f"{where or self.METHOD or type(self).__name__}: {name}: expected {expected}, "
                               f"got {value!r}")
        return self


@dataclasses.dataclass
class TrainingHParams(CheckedHParams):
    """What every gradient-trained procedure shares (finetuning, the unlearning baselines): AdamW at
    `lr` with decoupled `weight_decay`, `epochs` passes in batches of `batch_size`, gradient clipping
    at `max_grad_norm` (0: off), and `seed` for the batch order. Subclasses set their own defaults."""
    lr: float = 1e-5
    epochs: int = 5
    batch_size: int = 4
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0

    ALIASES = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size"}

    def rules(self) -> dict:
        real, whole = real_number, whole_number
        return {"lr": (lambda v: real(v) and v > 0, "a positive number"),
                "epochs": (lambda v: whole(v) and v >= 1, "an integer >= 1"),
                "batch_size": (lambda v: whole(v) and v >= 1, "an integer >= 1"),
                "weight_decay": (lambda v: real(v) and v >= 0, "a number >= 0"),
                "max_grad_norm": (lambda v: real(v) and v >= 0, "a number >= 0 (0 turns clipping off)"),
                "seed": (whole, "an integer"), **self.extra_rules()}

    def extra_rules(self) -> dict:
        """A subclass's own fields: {name: (predicate, what is expected)}."""
        return {}
