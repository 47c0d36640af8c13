"""Safetensors files made for one model: a change (weight deltas or a memory adaptor) saved with the fingerprint of
the model it applies to (`load.model_fingerprint`), read back only into that model.

The metadata holds one JSON header under `e2u`: the file's `format`, the `fingerprint`, a SHA-256 `digest` of the
tensors' bytes (so that a damaged file is refused, not applied) and what the format adds. A file is written to a
temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from e2u.errors import E2UError
from e2u.files import atomic_path
from e2u.model.load import model_fingerprint


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_for_model(path: str | Path, tensors: dict[str, torch.Tensor], header: dict) -> None:
    """Write `tensors` with `header` (which names its `format` and `fingerprint`) and their digest, all or nothing."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    full = {**header, "digest": tensors_digest(tensors)}
    with atomic_path(path, ".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"e2u": json.dumps(full, default=str)})


def read_header(path: str | Path, what: str) -> dict:
    """The e2u header of the file at `path` ({} when it has none); a clear error for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise E2UError(f"{what} {path}: not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a damaged or truncated file
        raise E2UError(f"{what} {path}: not a safetensors file ({exc})") from None
    try:
        header = json.loads(metadata.get("e2u", ""))
    except json.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}


def read_for_model(path: str | Path, what: str, formats: tuple[str, ...]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a file of one of `formats`; its digest checked where it records one."""
    header = read_header(path, what)
    if header.get("format") not in formats:
        raise E2UError(f"{what} {path}: no e2u header of format {' or '.join(map(repr, formats))}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:
        raise E2UError(f"{what} {path}: not a safetensors file ({exc})") from None
    if "digest" in header and tensors_digest(tensors) != header["digest"]:
        raise E2UError(f"{what} {path}: its tensors do not match the digest it was saved with (a damaged file)")
    return header, tensors


def require_model(header: dict, model: torch.nn.Module, path: str | Path, what: str) -> None:
    """`model` must be the model the file was made for (the fingerprint in its header)."""
    fingerprint = model_fingerprint(model)
    if header.get("fingerprint") != fingerprint:
        raise E2UError(f"{what} {path}: made for the model with fingerprint {header.get('fingerprint')}, not for this "
                       f"one ({fingerprint}); load it into that model")
