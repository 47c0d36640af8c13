"""Sequential unlearning (issue 18): the forget set split into chunks unlearned one after another, each
starting from the model the previous chunk left, the model evaluated after every chunk.

A memory editor (GRACE, WISE) goes on editing the memory it attached for the first chunk; every other
method starts from the weights as the previous chunk left them (`methods.run_method(previous=...)`).
After chunk k the forget Rouge1 is reported over the questions unlearned so far (chunks 0..k) and over
those still to come, next to the retain Rouge1: forgetting that holds, and what it costs, as the
sequence grows.
"""

from __future__ import annotations

from typing import Sequence

from e2u.errors import E2UError
from e2u.evaluation.evaluate import summarise
from e2u.evaluation.metrics import mean


def forget_chunks(records: Sequence, chunks: int) -> list[list]:
    """`records` in `chunks` contiguous parts of near-equal size (the earlier parts one larger)."""
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise E2UError(f"parameter chunks: expected an integer >= 1, got {chunks!r}")
    if chunks > len(records):
        raise E2UError(f"parameter chunks: {chunks} chunks of a forget set of {len(records)} questions; "
                       f"at most {len(records)} (one question per chunk)")
    size, extra = divmod(len(records), chunks)
    parts, start = [], 0
    for k in range(chunks):
        end = start + size + (k < extra)
        parts.append(list(records[start:end]))
        start = end
    return parts


def chunk_report(number: int, parts: Sequence[Sequence], evaluation: dict) -> dict:
    """What the model after chunk `number` scores: the split summaries, and forget Rouge1 over the
    questions unlearned so far and over those of the later chunks."""
    done = {r.question for part in parts[: number + 1] for r in part}
    forget = evaluation.get("forget", [])
    so_far = [item["rouge1_recall"] for item in forget if item["question"] in done]
    later = [item["rouge1_recall"] for item in forget if item["question"] not in done]
    return {"chunk": number, "questions_unlearned": len(done), "summary": summarise(evaluation),
            "forget_rouge1_unlearned": mean(so_far) if so_far else None,
            "forget_rouge1_later": mean(later) if later else None}
