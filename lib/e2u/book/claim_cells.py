"""Which cells enter a claim's comparison, and their per-item values (one idea: from result files to the numbers
the bootstrap resamples).

* A cell is of one *recipe kind*: plain, merged queries (`params.merge_group` > 0), self-written targets
  (`params.refusal` "self") or in chunks (`params.chunks` > 1); each comparison reads one kind.
* A side of a comparison is a group of methods in one setting and seed; a method's per-item value is the mean
  over its cells there (two labels of one method), and the group's is the mean over its methods, where methods
  whose cells gave identical greedy answers to every question (GA and KL did, in the last default build) count
  once: their per-item values are the same, and counting both would weigh that answer twice.
* A measure is a sum of means of per-item values over splits (`Part`): the combined score is
  mean(1 - Rouge1) over the forget questions + mean(Rouge1) over the kept ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from e2u.book.bootstrap import Block
from e2u.book.readings import Reading
from e2u.errors import E2UError
from e2u.evaluation.paper_metrics import retain_split

PLAIN, MERGED, SELF_WRITTEN, CHUNKED = "plain", "merged queries", "self-written targets", "in chunks"
ALIGNED = "aligned"  # the per-item human-aligned check (`human_aligned.per_item`), on the forget questions


def recipe_kind(params: Mapping) -> str:
    """The recipe a cell ran: in chunks, merged queries, self-written targets, or plain."""
    if params.get("chunks", 1) > 1:
        return CHUNKED
    if params.get("merge_group", 0) > 0:
        return MERGED
    return SELF_WRITTEN if params.get("refusal") == "self" else PLAIN


def cells(results: Iterable[dict], setting: str, methods: Sequence[str], kind: str,
          reading: Reading) -> dict[int, dict[str, list[dict]]]:
    """{seed: {method: its cells}} of `methods` in `setting` that ran `kind`; failed edits only when the reading
    counts them."""
    out: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        params = result["params"]
        if (params["setting"] == setting and params["method"] in methods and recipe_kind(params) == kind
                and (reading.failed_edits or not result.get("failed_edit"))):
            out[params["seed"]][params["method"]].append(result)
    return {seed: dict(by_method) for seed, by_method in out.items()}


@dataclass(frozen=True)
class Part:
    """mean over `split`'s questions of the per-item `metric` (1 - it when `complement`)."""

    split: str
    metric: str
    complement: bool = False


def kept_split(after: Mapping, reading: Reading) -> str | None:
    """The kept questions' split: the independent ones when the reading asks for them and the cell has them,
    else `paper_metrics.retain_split`."""
    return "independent" if reading.kept == "independent" and "independent" in after else retain_split(after)


def item_values(result: dict, part: Part) -> tuple[tuple[str, ...], np.ndarray]:
    """(questions, per-item values) of one cell for `part`, from `after[split]` (or `human_aligned.per_item`)."""
    cell = f"{result['params']['setting']}/{result.get('cell_id', result['params']['method'])}"
    items = result.get("after", {}).get(part.split)
    if items is None:
        raise E2UError(f"result {cell}: no per-item 'after.{part.split}' to measure {part.metric} on")
    questions = tuple(item["question"] for item in items)
    if part.metric == ALIGNED:
        per_item = (result.get("human_aligned") or {}).get("per_item")
        if per_item is None or len(per_item) != len(items):
            raise E2UError(f"result {cell}: 'human_aligned.per_item' must hold one check per forget question")
        values = [float(item["aligned"]) for item in per_item]
    else:
        missing = [i for i, item in enumerate(items) if item.get(part.metric) is None]
        if missing:
            raise E2UError(f"result {cell}: 'after.{part.split}[{missing[0]}]' has no per-item '{part.metric}'")
        values = [float(item[part.metric]) for item in items]
    array = np.asarray(values)
    return questions, 1.0 - array if part.complement else array


def answers(result: dict) -> tuple:
    """Every greedy answer of a cell after unlearning, split by split (what `coinciding` compares)."""
    return tuple((split, tuple(item.get("generated") for item in items))
                 for split, items in sorted(result.get("after", {}).items()))


def coinciding(by_method: Mapping[str, list[dict]]) -> list[tuple[str, ...]]:
    """Groups of two or more methods whose cells gave identical greedy answers to every question (in order)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for method, method_cells in by_method.items():
        groups[tuple(sorted(answers(c) for c in method_cells))].append(method)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def distinct(by_method: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    """`by_method` with each group of coinciding methods kept once (its first method)."""
    dropped = {m for group in coinciding(by_method) for m in group[1:]}
    return {m: c for m, c in by_method.items() if m not in dropped}


def side_values(by_method: Mapping[str, list[dict]], part: Part, where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(questions, per-item values) of a group: each method's mean over its cells, then the mean over the
    distinct methods; every cell must have asked the same questions."""
    questions, rows = None, []
    for method, method_cells in distinct(by_method).items():
        values = []
        for cell in method_cells:
            asked, v = item_values(cell, part)
            if questions is None:
                questions = asked
            elif asked != questions:
                raise E2UError(f"{where}: {cell.get('cell_id', method)} asked other '{part.split}' questions than the "
                               "cells it is compared with; a paired comparison needs the same questions")
            values.append(v)
        rows.append(np.mean(values, axis=0))
    if questions is None:
        raise E2UError(f"{where}: no cells on this side of the comparison")
    return questions, np.mean(rows, axis=0)


def statistic(by_method: Mapping[str, list[dict]], parts: Sequence[Part], where: str) -> float:
    """A group's measure at one seed: the sum over `parts` of the mean per-item value."""
    return float(sum(side_values(by_method, p, where)[1].mean() for p in parts))


def blocks(claimed: Mapping[str, list[dict]], other: Mapping[str, list[dict]], parts: Sequence[Part],
           where: str) -> list[Block]:
    """One block per part: both groups' per-item values on the same questions (checked)."""
    out = []
    for part in parts:
        asked, mine = side_values(claimed, part, where)
        asked_other, theirs = side_values(other, part, where)
        if asked != asked_other:
            raise E2UError(f"{where}: the two sides asked different '{part.split}' questions; a paired comparison "
                           "needs the same questions (the same setting and seed)")
        out.append(Block(f"{where} {part.split}", mine, theirs))
    return out


def fallbacks(result: dict) -> tuple[int, int] | None:
    """(targets that fell back to the template, targets) of a self-improvement cell (`crafted_targets`, each with
    `source` "model" or "template"); None where the cell recorded none."""
    crafted = result.get("crafted_targets")
    if not crafted:
        return None
    return sum(t["source"] == "template" for t in crafted), len(crafted)


def shared_seeds(*sides: Mapping[int, Mapping[str, list[dict]]]) -> list[int]:
    """The seeds every side has, each side with every method it has anywhere (a group's mean means the same
    thing in every seed)."""
    common = set.intersection(*(set(side) for side in sides)) if sides else set()
    for side in sides:
        methods = set().union(*(set(by_method) for by_method in side.values())) if side else set()
        common = {s for s in common if set(side[s]) == methods}
    return sorted(common)
