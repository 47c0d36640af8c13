"""Reruns beside the study (`e2u rerun`): how a variant of a cell is named, and how a reader tells it apart.

A variant is the study's cell run again with some parameters changed. It never takes the cell's place: its
result file and its chapter sit beside the cell's, named by what changed, `<cell id>.rerun-<key>-<value>...`
(`rome-seed0.rerun-layer-2.json`, `ga-seed0.rerun-lr-1e-05.ipynb`). The summary lists the variants apart;
the claims, the setting pages and the cost chapter read only the study's own cells (`result_files`).
"""

from __future__ import annotations

import re
from pathlib import Path

PREFIX = "rerun-"
_VARIANT = re.compile(r"^(?P<cell>.+?-seed\d+)\.(?P<variant>rerun-.+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def _value_text(value) -> str:
    """A YAML value as a file-name part: lists joined by `_`, floats as Python writes them (`1e-05`)."""
    if isinstance(value, (list, tuple)):
        return "_".join(_value_text(v) for v in value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def variant_name(changes: dict) -> str:
    """`rerun-<key>-<value>-...` from {key: [the study's value, the new one]}, keys sorted, unsafe characters
    replaced by `_` (the name is a file name and a page of the book)."""
    parts = [f"{key.removeprefix('hparams.')}-{_value_text(new)}" for key, (_, new) in sorted(changes.items())]
    return _UNSAFE.sub("_", PREFIX + "-".join(parts)).rstrip(".")


def variant_path(path: Path, name: str) -> Path:
    """The variant `name` of a cell's file (`<cell id>.json` or `.ipynb`): `<cell id>.<name><suffix>` beside it."""
    return path.with_name(f"{path.stem}.{name}{path.suffix}")


def split_variant(stem: str) -> tuple[str, str]:
    """(cell id, variant name) of a result or chapter file's stem; the variant name is empty for the study's cell."""
    found = _VARIANT.match(stem)
    return (found["cell"], found["variant"]) if found else (stem, "")

