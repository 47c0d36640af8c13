"""Edit requests for unlearning, and where their key token sits.

A request is (question, subject, target): the question is rendered through the chat template
(`prompts.render_question`), the target is a refusal followed by EOS. The key token is the last
token of the subject inside the rendered prompt ("subject_last"), found from the tokenizer's
character offsets so that BOS tokens and merges cannot shift it; a prompt without its subject
falls back to the last prompt token, and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from e2u.data.refusals import refusal_for
from e2u.errors import E2UError
from e2u.model.prompts import encode_prompt, has_chat_template, render_question

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditRequest:
    question: str
    target: str
    subject: str | None = None
    eos: bool = True  # end the target with EOS (refusals do; single-token fact edits need not)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise E2UError(f"edit request for {self.question!r}: target is empty; expected a refusal string")
        if not isinstance(self.question, str) or not self.question.strip():
            raise E2UError("edit request: question is empty")


def unlearning_requests(records, refusal: str = "fixed", seed: int = 0) -> list[EditRequest]:
    """One request per forget record: its question edited into a refusal."""
    return [EditRequest(r.question, refusal_for(r.question, refusal, seed), r.subject) for r in records]


@dataclass(frozen=True)
class Site:
    """A tokenised prompt and the index of its key token."""
    ids: list[int]
    index: int
    subject_found: bool


def subject_last_index(tokenizer, text: str, subject: str | None) -> int | None:
    """Index of the last token overlapping the last occurrence of `subject` in `text`, or None."""
    if not subject:
        return None
    start = text.rfind(subject)
    if start < 0:
        return None
    end = start + len(subject)
    add_special = not has_chat_template(tokenizer)
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)["offset_mapping"]
        overlapping = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        return overlapping[-1] if overlapping else None
    return len(tokenizer(text[:end], add_special_tokens=add_special)["input_ids"]) - 1


def key_site(tokenizer, request: EditRequest, context: str = "{}") -> Site:
    """The rendered prompt of `request` inside a context template, and its key-token index."""
    text = render_question(tokenizer, context.format(request.question))
    ids = encode_prompt(tokenizer, text)
    index = subject_last_index(tokenizer, text, request.subject)
    if index is None:
        return Site(ids, len(ids) - 1, False)
    return Site(ids, index, True)


def report_missing_subjects(tokenizer, requests) -> list[int]:
    """Log (once per request) every prompt whose subject is absent; return their positions."""
    missing = [i for i, r in enumerate(requests) if not key_site(tokenizer, r).subject_found]
    for i in missing:
        log.warning(
            "request %d: subject %r not found in %r; using the last prompt token as the key",
            i, requests[i].subject, requests[i].question,
        )
    return missing
