"""Data sources by name. Each returns `{split name: [QARecord, ...]}`.

* `mini`: the embedded set of real-world facts that SmolLM2-135M-Instruct knows (split
  `forget` and `neighbour`), for the pretrained-knowledge skeleton;
* `jsonl`: a local directory with one `<split>.jsonl` file per split (at least `forget.jsonl`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import E2UError
from .schema import QARecord, read_jsonl, record_from_json

MINI_FILE = Path(__file__).with_name("mini.jsonl")


def load_mini() -> dict[str, list[QARecord]]:
    splits: dict[str, list[QARecord]] = {}
    for where, obj in read_jsonl(MINI_FILE):
        split = obj.get("split") if isinstance(obj, dict) else None
        if split not in ("forget", "neighbour"):
            raise E2UError(f"{where}: field 'split' must be 'forget' or 'neighbour'")
        splits.setdefault(split, []).append(record_from_json(obj, where))
    return splits


def load_jsonl_dir(path: str) -> dict[str, list[QARecord]]:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise E2UError(f"data path {directory} is not a directory of <split>.jsonl files")
    files = sorted(directory.glob("*.jsonl"))
    if not any(f.stem == "forget" for f in files):
        raise E2UError(f"data directory {directory} has no forget.jsonl (found {[f.name for f in files]})")
    return {f.stem: [record_from_json(obj, where) for where, obj in read_jsonl(f)] for f in files}


def load_source(source: str, path: str | None = None) -> dict[str, list[QARecord]]:
    """Load the data source named `source` (`path` for the file-based ones)."""
    if source == "mini":
        return load_mini()
    if source == "jsonl":
        if not path:
            raise E2UError("data source 'jsonl' needs data.path: a directory of <split>.jsonl files")
        return load_jsonl_dir(path)
    raise E2UError(f"unknown data source {source!r}: expected one of ['mini', 'jsonl']")


def source_files(source: str, path: str | None = None) -> list[Path]:
    """The files a source reads, whose hashes enter the cache keys."""
    if source == "mini":
        return [MINI_FILE]
    if source == "jsonl" and path:
        return sorted(Path(path).expanduser().glob("*.jsonl"))
    return []
