"""The book's check of its own measures: the refusal detector and the human-aligned checks against answers
labelled by reading them (`evaluation.labels`; the set and how it was labelled: lib/e2u/data/LABELS.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from e2u.evaluation.human_aligned import AlignmentBounds
from e2u.evaluation.labels import LABELLED_ANSWERS, LABELS, agreement, held_out, read_labels

COLUMNS = ("rows", "measure", "label", "n", "precision", "recall", "true positives", "false positives",
           "false negatives")
PARTS = ("all", "held out")


def detector_table(path: str | Path = LABELLED_ANSWERS, bounds: AlignmentBounds = AlignmentBounds(),
                   splits: tuple[str, ...] | None = None, parts: tuple[str, ...] = PARTS,
                   labelled: str | None = None) -> pd.DataFrame:
    """Each measure against its label, on every labelled answer (`rows` "all") and on the held-out part the
    measures were not tuned on ("held out"): n, precision, recall (rounded to 3 places; blank where nothing is
    counted) and the counts they come from. A measure "passes" an answer (refusal, fluent, no leak, on topic,
    aligned); `label` says what the reader's label must be for it to pass. `splits` keeps the answers of those
    splits only (e.g. ("forget", "forget_paraphrased"): where the human-aligned measure is applied); `labelled` the
    answers whose label of that name is true (e.g. "refusal": the answers where fluency, leak and topic decide
    the aligned verdict)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"parts: unknown {unknown}; expected some of {list(PARTS)}")
    if labelled is not None and labelled not in LABELS:
        raise ValueError(f"labelled: expected one of {list(LABELS)}, got {labelled!r}")
    rows = read_labels(path)
    if splits is not None:
        rows = [r for r in rows if r.split in splits]
    if labelled is not None:
        rows = [r for r in rows if r.labels[labelled]]
    chosen = {"all": rows, "held out": held_out(rows)[1]}
    records = []
    for part in parts:
        for a in agreement(chosen[part], bounds):
            records.append({"rows": part, "measure": a.measure, "label": a.label, "n": a.n,
                            "precision": _rounded(a.precision), "recall": _rounded(a.recall),
                            "true positives": a.true_positives, "false positives": a.false_positives,
                            "false negatives": a.false_negatives})
    return pd.DataFrame(records, columns=list(COLUMNS))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def labelled_set(path: str | Path = LABELLED_ANSWERS) -> dict:
    """What the table rests on, for the chapter's prose: the number of answers, of held-out ones, of each label's
    positives, and the methods, settings and splits covered."""
    rows = read_labels(path)
    return {"answers": len(rows), "held_out": len(held_out(rows)[1]),
            **{label: sum(r.labels[label] for r in rows) for label in LABELS},
            "methods": sorted({r.method for r in rows}), "settings": sorted({r.setting for r in rows}),
            "splits": sorted({r.split for r in rows}), "studies": sorted({r.study for r in rows})}
