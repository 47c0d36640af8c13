"""What every model-free or model-asking source's options share: a frozen dataclass of named, checked fields.

`ProbeOptions`, `FactualOptions` and `PistolOptions` are the study file's `data:` options of their sources;
each subclass sets `SOURCE` and checks its own fields in `__post_init__`, naming the option and what it expects.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar

from e2u.errors import E2UError


def is_int(value) -> bool:
    """An integer that is not a bool (YAML's `true` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


class SourceOptions:
    """Mixin for a frozen dataclass of a source's options."""
    SOURCE: ClassVar[str] = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict:
        return asdict(cls())

    @classmethod
    def of(cls, options=None):
        """The defaults updated with `options` (a mapping, or already an instance); an unknown option is an
        error naming the allowed ones."""
        if isinstance(options, cls):
            return options
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise E2UError(f"data source {cls.SOURCE!r}: unknown option(s) {unknown}; allowed: {sorted(cls.names())}")
        return cls(**options)

    def require_counts(self, least: dict[str, int]) -> None:
        """Each named option an integer at least its bound, and `seed` an integer (errors name the option)."""
        for name, bound in least.items():
            value = getattr(self, name)
            if not is_int(value) or value < bound:
                raise E2UError(f"{name}: expected an integer >= {bound}, got {value!r}")
        if not is_int(self.seed):
            raise E2UError(f"seed: expected an integer, got {self.seed!r}")
