"""A dataclass from the JSON text of one object, as notebooks and subprocesses receive their parameters."""

from __future__ import annotations

import json
from dataclasses import fields

from e2u.errors import E2UError


def from_json_object(cls, text: str, what: str):
    """`cls(**object)` for the JSON object in `text`; anything else, or an unknown field, is an error naming `what`."""
    try:
        values = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise E2UError(f"{what}: expected a JSON object, got {str(text)[:80]!r}") from exc
    if not isinstance(values, dict):
        raise E2UError(f"{what}: expected a JSON object, got {type(values).__name__}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise E2UError(f"{what}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return cls(**values)
