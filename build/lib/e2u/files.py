"""Where e2u keeps its cache, and how it writes files without leaving half-written ones behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "notebooks"  # the papermill templates, package data (in the source tree: a link to notebooks/)
SOURCE_ROOT = PACKAGE.parents[1]  # the checkout's root when e2u runs from its source tree (lib/e2u)


def book_root() -> Path:
    """The Jupyter Book project `e2u book` builds by default: the working directory when it holds one (an
    installed e2u), else the checkout e2u runs from."""
    return Path.cwd() if (Path.cwd() / "_config.yml").is_file() else SOURCE_ROOT


def e2u_home() -> Path:
    """The cache directory: `$E2U_HOME`, default `~/.cache/e2u`."""
    return Path(os.environ.get("E2U_HOME", Path.home() / ".cache" / "e2u")).expanduser()


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(target: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented JSON to `target`, all or nothing."""
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result file")


def sha256_of_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
