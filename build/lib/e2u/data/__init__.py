"""Data sets: records, loaders and refusal targets."""

from e2u.data.schema import QARecord
from e2u.data.sources import load_source

__all__ = ["QARecord", "load_source"]
