"""Model directories on disk: saves that are trusted only when whole.

A saved directory holds safetensors weights, the tokenizer and an info file (JSON) whose `key` says
what the directory was made from. `trusted` returns that info only when the key is the one asked for
and weights are present; anything else (another key, an interrupted save, a hand-made copy) is a miss
and the caller makes the model again. `save_model_atomic` writes into a hidden staging directory
beside the target and renames it into place, the info file last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from e2u.files import write_json_atomic

INFO_FILE = "e2u_model.json"


def slug(name: str) -> str:
    """A file-name-safe short form of a model name: a directory's last part, a hub id with `--` for `/`."""
    tail = Path(name).name if Path(name).expanduser().is_dir() else name.replace("/", "--")
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in tail).strip(".-") or "model"


def trusted(directory: Path, key: Any, info_file: str = INFO_FILE) -> dict | None:
    """The info record of a finished model directory saved with this key, else None."""
    info_path = Path(directory) / info_file
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    weights = list(Path(directory).glob("*.safetensors"))
    same = isinstance(info, dict) and info.get("key") == json.loads(json.dumps(key, default=str))
    return info if same and weights else None


def save_model_atomic(model, tokenizer, directory: Path, info: dict, info_file: str = INFO_FILE) -> None:
    """Save weights (safetensors), tokenizer and `info` (holding its `key`) into a fresh directory beside
    `directory`, then rename it into place: an interrupted save leaves only a hidden `.name.*` directory."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old = None
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / info_file, info)  # written last: its presence marks a finished save
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():  # safetensors writes 0600 and mkdtemp makes 0700: open them to others
            os.chmod(path, 0o666 & ~umask)
        os.chmod(staging, 0o777 & ~umask)
        if directory.exists():
            if trusted(directory, info["key"], info_file) is not None:
                return  # another run finished the same model first
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old / directory.name)  # moved aside, not deleted: readers see it gone briefly
        os.replace(staging, directory)
    finally:
        for leftover in (staging, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
