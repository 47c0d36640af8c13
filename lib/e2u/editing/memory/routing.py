"""Routing statistics: which prompts a memory answered for, at the positions generation decides on.

A prompt is *routed* when the memory answers at its last token, the position that chooses the first
answer token. The memory decides again at every answer token (`memory_rows`), so the statistics also
count the prompts routed at any answer position and the share of answer positions routed. The answer is
the one the model generated: the statistics describe what a user saw. Per split: `prompts`, `routed`,
`routed_rate`, `routed_anywhere` (count), `position_share` (mean over prompts).

An edit whose memory answers for too many kept questions has not unlearned anything selectively:
`check_retain_routing` reports it as a failed edit, never as a success.
"""

from __future__ import annotations

from typing import Sequence

import torch

from e2u.editing.memory.adaptor import MemoryAdaptor
from e2u.editing.memory.rows import MemoryRows, memory_rows
from e2u.errors import E2UError
from e2u.model.batching import padded
from e2u.model.cache_keywords import cache_arguments
from e2u.model.kv_context import cache_of, prefill
from e2u.model.load import input_device


class FailedEdit(E2UError):
    """A memory-based edit whose memory answers for too many kept prompts. The model is left unedited; the
    (detached) memory is `adaptor`, so that a study can measure what it would have done and flag the result."""
    def __init__(self, message: str, adaptor: MemoryAdaptor):
        super().__init__(message)
        self.adaptor = adaptor


def routed_rows(model, adaptor: MemoryAdaptor, rows: MemoryRows) -> list[dict]:
    """Per row: routed at the first answer position, the share of answer positions routed.

    The passes are those of generation: the prompts prefilled (left padded), then the answer tokens
    after them in one pass that continues the cache — so a memory that decides a prefill as a whole
    (WISE) and each later token on its own is measured as a user's `generate` meets it."""
    device = input_device(model)
    prompts = [example.prompt for example in rows.examples]
    answers = [example.answer[:-1] for example in rows.examples]  # a[:-1]: the positions that choose a[1:]
    with torch.no_grad(), adaptor.recording() as masks:
        context = prefill(model, prompts, 0)
        if max(map(len, answers)):
            answer_ids, answer_mask = padded(answers, 0, "right", device)
            model(input_ids=answer_ids, attention_mask=torch.cat([context.mask, answer_mask], dim=1),
                  position_ids=context.lengths[:, None] + torch.arange(answer_ids.shape[1], device=device),
                  use_cache=True, **cache_arguments(model, cache_of(model, context)))
    out = []
    for row, answer in enumerate(answers):
        decided = torch.cat([masks[0][row, -1:], masks[1][row, : len(answer)] if len(masks) > 1 else masks[0][row, :0]])
        out.append({"first": bool(decided[0]), "share": float(decided.float().mean()), "anywhere": bool(decided.any())})
    return out


def routing_summary(per_row: Sequence[dict]) -> dict:
    n = len(per_row)
    routed = sum(r["first"] for r in per_row)
    return {"prompts": n, "routed": routed, "routed_rate": round(routed / n, 4) if n else None,
            "routed_anywhere": sum(r["anywhere"] for r in per_row),
            "position_share": round(sum(r["share"] for r in per_row) / n, 4) if n else None}


def routing_of_pairs(model, tokenizer, adaptor: MemoryAdaptor, pairs: Sequence[tuple[str, str]],
                     batch_size: int = 16) -> dict:
    """`routing_summary` of (question, answer) pairs, in batches."""
    per_row = []
    for start in range(0, len(pairs), batch_size):
        rows = memory_rows(tokenizer, list(pairs[start : start + batch_size]), [], input_device(model))
        per_row += routed_rows(model, adaptor, rows)
    return routing_summary(per_row)


def routing_report(model, tokenizer, adaptor: MemoryAdaptor, parts: Sequence[tuple[str, list]], after: dict) -> dict:
    """Per evaluated split (`evaluate.evaluation_parts`): the routing of its questions with the answers
    the edited model generated for them (`after`, the evaluation's per-item results)."""
    report = {}
    for name, records in parts:
        answers = [item["generated"] for item in after.get(name, [])]
        if len(answers) == len(records) and records:
            report[name] = routing_of_pairs(model, tokenizer, adaptor, [(r.question, a) for r, a in zip(records, answers)])
    return report


def check_retain_routing(model, adaptor: MemoryAdaptor, kept: MemoryRows, max_rate: float, method: str,
                         setting: str, remedy: str) -> dict:
    """Log the routing of the kept questions (with their true answers); raise `FailedEdit` above `max_rate`."""
    summary = routing_summary(routed_rows(model, adaptor, kept))
    adaptor.log["retain_routing"] = summary
    if summary["routed_rate"] is not None and summary["routed_rate"] > max_rate:
        adaptor.remove()
        adaptor.log["failed_edit"] = (f"{method}: the edit failed: the memory answers for {summary['routed']} of "
                         f"{summary['prompts']} kept questions ({summary['routed_rate']:.0%}, above "
                         f"max_retain_routing {max_rate}); the {setting} routes kept prompts to the memory: {remedy}")
        raise FailedEdit(adaptor.log["failed_edit"], adaptor)
    return summary
