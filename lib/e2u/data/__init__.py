"""Data sets: records, loaders and refusal targets."""

from .schema import QARecord
from .sources import load_source

__all__ = ["QARecord", "load_source"]
