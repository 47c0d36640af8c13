"""The on-disk cache: every entry stores the key it was computed for, and a read checks it.

A file whose stored key differs from the one asked for (another model, corpus or setting), or that
cannot be read (truncated by a kill), is a miss: it is recomputed, never trusted. Entries are written
atomically (`files.atomic_path`). JSON entries hold `{"key": ..., "value": ...}`; tensor entries are
safetensors files with the key in their metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from e2u.files import atomic_path, e2u_home, sha256_of_json, write_json_atomic

log = logging.getLogger(__name__)


def entry_path(kind: str, key: dict, suffix: str = ".json", prefix: str = "", home: Path | None = None) -> Path:
    """`<home>/<kind>/<prefix><hash of key><suffix>`; home defaults to `$E2U_HOME`."""
    return (home if home is not None else e2u_home()) / kind / f"{prefix}{sha256_of_json(key)[:20]}{suffix}"


def read_json(path: Path, key: dict) -> Any | None:
    """The value stored at `path` for exactly `key`, else None (and a log line saying why)."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["key"] != json.loads(json.dumps(key, default=str)):
            log.info("cache %s was made for another key; recomputing", path)
            return None
        return stored["value"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        log.warning("cache %s is unreadable (%s); recomputing", path, exc)
        return None


def write_json(path: Path, key: dict, value: Any) -> None:
    write_json_atomic(path, {"key": key, "value": value})


def cached_json(path: Path, key: dict, compute: Callable[[], Any]) -> Any:
    """The stored value for `key`, or `compute()` stored under it."""
    value = read_json(path, key)
    if value is None:
        value = compute()
        write_json(path, key, value)
    return value


def read_tensors(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors entry made for exactly `key`, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = json.loads((handle.metadata() or {}).get("key", "null"))
            if stored != json.loads(json.dumps(key, sort_keys=True, default=str)):
                log.info("cache %s was made for another key; recomputing", path)
                return None
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # a truncated or foreign file: never trust it
        log.warning("cache %s is unreadable (%s); recomputing", path, exc)
        return None


def write_tensors(path: Path, key: dict, tensors: dict[str, torch.Tensor]) -> None:

    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={"key": json.dumps(key, sort_keys=True, default=str)})
