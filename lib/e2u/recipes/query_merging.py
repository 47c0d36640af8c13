"""Query merging: several forget queries about one subject merged into one edit request.

Ours (the paper names the recipe, not its procedure): the forget records are grouped by subject (in the
order they first appear; a record without a subject is a group of its own), each group is cut into runs of
`group_size` questions, and each run becomes one request whose prompt is its questions joined by a space,
with one refusal target. Subject-keyed editors (ROME, MEMIT, AlphaEdit) then make one edit per run
instead of one per question, which is what lets them unlearn long forget sequences without collapsing.
"""

from __future__ import annotations

from typing import Callable, Sequence

from e2u.data.schema import QARecord
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError


def subject_groups(records: Sequence[QARecord]) -> list[list[QARecord]]:
    """The records grouped by subject, groups and members in the order they first appear."""
    groups: dict[object, list[QARecord]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.subject or ("no subject", index), []).append(record)
    return list(groups.values())


def merge_queries(records: Sequence[QARecord], group_size: int,
                  refusal_of: Callable[[str], str]) -> list[EditRequest]:
    """One request per run of at most `group_size` same-subject questions; `refusal_of(prompt)` its target."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise E2UError(f"query merging: group_size: expected an integer >= 1, got {group_size!r}")
    if group_size > len(records):
        raise E2UError(f"query merging: group_size {group_size} is larger than the forget set "
                       f"({len(records)} questions); choose at most {len(records)}")
    requests = []
    for group in subject_groups(records):
        for start in range(0, len(group), group_size):
            run = group[start : start + group_size]
            prompt = " ".join(r.question.strip() for r in run)
            requests.append(EditRequest(prompt, refusal_of(prompt), run[0].subject))
    return requests


def merged_request_count(records: Sequence[QARecord], group_size: int) -> int:
    """How many requests `merge_queries` makes: the sum over subjects of ceil(size / group_size)."""
    return sum(-(-len(group) // group_size) for group in subject_groups(records))
