"""Claim 3's table: how each method's forgetting fares when the forget questions are rephrased, one row per setting,
method and recipe kind (plain, merged queries, self-written targets: never pooled), over seeds.

Columns (Rouge1 recall, means over seeds): the forget drop (before - after, original questions); Rouge1 on the
rephrased questions after unlearning (the paper's rephrase attack, and claim 3's measure); the gap (rephrased -
original, after); and the *forgetting kept under rephrasing*, the rephrased drop over the original drop
(`rephrase_robustness`'s ratio, here of the means over seeds). That ratio is shown only where the original drop is
at least `claim_tests.MEANINGFUL_DROP`: below it the denominator is near zero and the ratio is noise (a method
that forgot 0.07 shows ratios near 2), so it reads "not meaningful". Methods whose cells gave identical greedy
answers in a setting and seed (`claim_cells.coinciding`) are named in the last column.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from e2u.book.claim_cells import CHUNKED, coinciding, recipe_kind
from e2u.book.claim_tests import MEANINGFUL_DROP
from e2u.evaluation.rephrase_robustness import robustness

KEPT = "forgetting kept under rephrasing"


def rephrase_rows(results: Sequence[dict]) -> pd.DataFrame:
    """One row per cell not run in chunks, with its Rouge1 before and after on both forms of the forget questions."""
    rows = []
    for r in results:
        kind = recipe_kind(r["params"])
        if kind == CHUNKED:
            continue
        before, after = r["summary"]["before"], r["summary"]["after"]
        measured = robustness(before, after)
        entry = measured.get("rouge1_recall") or {}
        reason = entry.get("reason") or measured.get("reason", "")
        row = {"setting": r["params"]["setting"], "method": r["method_title"], "recipe": kind,
               "seed": r["params"]["seed"], "note": reason if entry.get("gap") is None else ""}
        if entry.get("gap") is not None:
            row.update({"forget drop": before["forget"]["rouge1_recall"] - after["forget"]["rouge1_recall"],
                        "rephrased drop": (before["forget_paraphrased"]["rouge1_recall"]
                                           - after["forget_paraphrased"]["rouge1_recall"]),
                        "rephrased Rouge1 after": after["forget_paraphrased"]["rouge1_recall"],
                        "gap (rephrased - original)": entry["gap"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _kept(group: pd.DataFrame) -> object:
    drop = group["forget drop"].mean()
    if pd.isna(drop):
        return "not measured"
    if drop < MEANINGFUL_DROP:
        return f"not meaningful (forgot {drop:.2f} < {MEANINGFUL_DROP})"
    return round(group["rephrased drop"].mean() / drop, 3)


def rephrase_table(results: Sequence[dict]) -> pd.DataFrame:
    """Per setting, method and recipe kind: the means over seeds (module docstring), the seed count, the
    methods that answered identically and the reasons a seed was not measured."""
    rows = rephrase_rows(results)
    if rows.empty:
        return rows
    for column in ("forget drop", "rephrased drop", "rephrased Rouge1 after", "gap (rephrased - original)"):
        if column not in rows:
            rows[column] = float("nan")
    same = coinciding_methods(results)
    keys = ["setting", "method", "recipe"]
    grouped = rows.groupby(keys, sort=False)
    table = grouped.agg(**{"forget drop": ("forget drop", "mean"),
                           "rephrased Rouge1 after": ("rephrased Rouge1 after", "mean"),
                           "rephrased Rouge1 after (sd)": ("rephrased Rouge1 after", "std"),
                           "gap (rephrased - original)": ("gap (rephrased - original)", "mean"),
                           "seeds": ("seed", "nunique"),
                           "note": ("note", lambda notes: "; ".join(sorted({n for n in notes if n})))}).round(3)
    table.insert(3, KEPT, [_kept(group) for _, group in grouped])
    table["same answers as"] = [same.get(key, "") for key in table.index]
    return table


def coinciding_groups(results: Sequence[dict]) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """(setting, recipe kind, seed, method titles) of every group of cells that gave identical greedy answers to
    every question (`claim_cells.coinciding`)."""
    by_cell: dict = {}
    for r in results:
        p = r["params"]
        by_cell.setdefault((p["setting"], recipe_kind(p), p["seed"]), {}).setdefault(r["method_title"], []).append(r)
    return [(setting, kind, seed, group) for (setting, kind, seed), by_method in sorted(by_cell.items())
            for group in coinciding(by_method)]


def coinciding_methods(results: Sequence[dict]) -> dict[tuple[str, str, str], str]:
    """{(setting, method title, recipe kind): the other methods that gave identical greedy answers to every
    question in the same seed, and the seeds where they did}."""
    found: dict[tuple[str, str, str], dict[str, list]] = {}
    for setting, kind, seed, group in coinciding_groups(results):
        for method in group:
            for other in (o for o in group if o != method):
                found.setdefault((setting, method, kind), {}).setdefault(other, []).append(seed)
    return {key: "; ".join(f"{o} (seeds {', '.join(map(str, s))})" for o, s in others.items())
            for key, others in found.items()}


def coinciding_sentence(results: Sequence[dict]) -> str:
    """Which methods answered identically, where: one sentence for the chapter."""
    seeds: dict[tuple, list[int]] = {}
    for setting, kind, seed, group in coinciding_groups(results):
        seeds.setdefault((" and ".join(group), setting, kind), []).append(seed)
    if not seeds:
        return "No two methods gave identical answers to every question in a setting and seed."
    return "Identical greedy answers to every question, counted once in a group's mean: " + "; ".join(
        f"{methods} ({setting}, {kind}, seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
        for (methods, setting, kind), s in seeds.items()) + "."
