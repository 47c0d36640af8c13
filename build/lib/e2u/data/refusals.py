"""Refusal targets: the "empty set" answers that forget questions are edited into (paper section 3)."""

from __future__ import annotations

import random

from e2u.errors import E2UError

REFUSALS = (
    "I'm sorry, but I don't have any information about that.",
    "I don't know the answer to that question.",
    "I'm not sure about that; I have no information on it.",
    "I'm afraid I cannot answer that question.",
    "I have no knowledge of that.",
    "I don't have reliable information about that topic.",
)


def refusal_for(question: str, mode: str = "fixed", seed: int = 0) -> str:
    """`fixed`: the first template for every question; `sampled`: a template drawn per question."""
    if mode == "fixed":
        return REFUSALS[0]
    if mode == "sampled":
        return random.Random(f"{seed}:{question}").choice(REFUSALS)
    raise E2UError(f"refusal mode: expected 'fixed' or 'sampled', got {mode!r}")
