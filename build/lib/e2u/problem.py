"""The unlearning problem every method is given (DESIGN section 2).

Editors turn `forget` into edit requests (each question edited into a refusal); training baselines
use `forget` and `retain` as data; methods that need a frozen reference model (KL, DPO, NPO) ask
`reference()`, which loads it on first use and keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.recipes.query_merging import merge_queries


@dataclass
class UnlearningProblem:
    forget: Sequence[QARecord]
    retain: Sequence[QARecord] = ()  # what must be kept: the retain set, or neighbour facts
    refusal: str = "fixed"  # the refusal target: `fixed` or `sampled` (data.refusals), `self` (with `targets`)
    seed: int = 0
    load_reference: Callable[[], torch.nn.Module] | None = None
    targets: Mapping[str, str] | None = None  # question -> its own refusal (the self-improvement recipe)
    merge_group: int = 0  # > 0: the query-merging recipe, that many same-subject questions per request
    # the caller's on-disk cache, (kind, key, compute) -> value, keyed by the caller on the model and the code
    # besides `key`; None: every value is computed when asked
    cache: Callable[[str, dict, Callable[[], Any]], Any] | None = None
    _reference: torch.nn.Module | None = field(default=None, init=False, repr=False)

    def refusal_of(self, question: str) -> str:
        """The refusal target of `question`: its crafted one if the recipe wrote it, else the template."""
        crafted = (self.targets or {}).get(question)
        return crafted or refusal_for(question, "fixed" if self.refusal == "self" else self.refusal, self.seed)

    def edit_requests(self) -> list[EditRequest]:
        """One request per forget record (its question edited into its refusal), or per merged run of
        same-subject questions with `merge_group` (recipes.query_merging)."""
        if self.merge_group:

            return merge_queries(self.forget, self.merge_group, self.refusal_of)
        return [EditRequest(r.question, self.refusal_of(r.question), r.subject) for r in self.forget]

    def cached(self, kind: str, key: dict, compute: Callable[[], Any]) -> Any:
        """`compute()`, or what the caller's cache holds for `kind` and `key` (e.g. the unedited model's answers
        to the kept questions, which every memory cell of a setting asks)."""
        return compute() if self.cache is None else self.cache(kind, key, compute)

    def reference(self) -> torch.nn.Module:
        """The frozen model before unlearning, loaded once (eval mode, no gradients)."""
        if self._reference is None:
            if self.load_reference is None:
                raise E2UError("this unlearning problem has no reference model: the method needs one, "
                               "but no load_reference was given")
            model = self.load_reference().eval()
            for p in model.parameters():
                p.requires_grad_(False)
            self._reference = model
        return self._reference
