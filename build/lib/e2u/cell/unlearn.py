"""A cell's unlearning: the method applied to the forget set, in one go or chunk after chunk (sequential
unlearning), each chunk from the model the previous one left and evaluated after it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from e2u.editing.memory.routing import FailedEdit
from e2u.methods import run_method
from e2u.model.load import statistics_of
from e2u.problem import UnlearningProblem
from e2u.recipes.sequential import chunk_report

log = logging.getLogger(__name__)


@dataclass
class Unlearned:
    """What unlearning left: the change (weight deltas or a memory), the reports of the chunks before the last,
    and the seconds their evaluations took."""
    outcome: object
    chunk_reports: list = field(default_factory=list)
    chunk_seconds: float = 0.0


def unlearn_in_chunks(model, tokenizer, method: str, hp, parts: Sequence[Sequence], fingerprint: str,
                      problem_of: Callable[[Sequence], UnlearningProblem],
                      evaluate: Callable[[], dict]) -> Unlearned:
    """`method` on each forget chunk in `parts` in turn (`problem_of(chunk)` its problem); every chunk edits with
    the statistics of the model `fingerprint` names (the unedited one); `evaluate()` after each but the last."""
    done = Unlearned(None)
    for number, part in enumerate(parts):
        try:
            with statistics_of(model, fingerprint):
                changed = run_method(method, model, tokenizer, problem_of(part), hp, previous=done.outcome)
            # after an earlier chunk: weight changes sum (what `unedited` reverts), a memory goes on
            done.outcome = changed if done.outcome is None else done.outcome.followed_by(changed)
        except FailedEdit as failed:  # measured anyway, with the memory attached, and flagged in the result
            log.warning("%s", failed)
            done.outcome = failed.adaptor.reattached(model)
        if number < len(parts) - 1:  # the last chunk is evaluated as every cell is, by the caller
            started = time.perf_counter()
            done.chunk_reports.append(chunk_report(number, parts, evaluate()))
            done.chunk_seconds += time.perf_counter() - started
    return done
