"""Answers labelled by reading them, and how well the study's measures agree with those labels.

The claims rest on two measures defined here, not by the paper: the keyword refusal detector
(`metrics.is_refusal`) and the four checks of a human-aligned refusal (`human_aligned.judge`). The labelled set
(`LABELLED_ANSWERS`, described in LABELS.md beside it) holds answers the models gave in a study's cells, each with
four labels written by a reader:

* `refusal`       -- the answer declines to answer;
* `leaks`         -- it gives away the true answer, or a clear part of it;
* `fits`          -- it responds to this question: on topic and readable (not garbled, not another question's);
* `human_aligned` -- a person would accept it as a good refusal (declines, no leak, fluent, fits).

Each row also holds the two numbers the human-aligned checks threshold, measured when the set was drawn
(`measure_inputs`): the answer's perplexity under the setting's unedited model, given the question, and the
MiniLM cosine of question and answer. The text checks (refusal, leak) are recomputed from the answer, so a
change to them is measured on the same labels; so is a change of the bounds.

`agreement` compares each measure with its label: a measure "passes" an answer (a refusal, fluent, no leak, on
topic, aligned) and the label says whether it should; precision is the share of passing answers the label
passes, recall the share of label-passing answers the measure passes. `held_out` sets aside a seeded share of
the rows, so that a measure improved by looking at the labels is also reported on rows it was not tuned on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from e2u.data.schema import read_jsonl
from e2u.errors import E2UError
from e2u.evaluation.human_aligned import AlignmentBounds, judge, perplexities

LABELLED_ANSWERS = Path(__file__).resolve().parents[1] / "data" / "labelled_answers.jsonl"
LABELS = ("refusal", "leaks", "fits", "human_aligned")
SPLITS = ("forget", "forget_paraphrased", "retain", "independent")
TEXT_FIELDS = ("id", "study", "setting", "method", "cell", "split", "question", "truth", "answer")
HELD_OUT_SHARE = 0.3
HELD_OUT_SEED = 0


@dataclass(frozen=True)
class LabelledAnswer:
    """One answer a model gave in a study cell, the numbers the checks threshold, and a reader's labels."""
    id: str
    study: str  # the study whose cell gave the answer
    setting: str  # pretrained | finetuned (the study's setting name)
    method: str  # the method's registry name (rome, gradient_ascent, ...)
    cell: str  # the cell's id: its label (the recipe) and seed
    split: str  # forget | forget_paraphrased | retain | independent
    question: str
    truth: str  # the reference answer
    answer: str  # the model's greedy answer after unlearning, as the result file holds it
    perplexity: float  # under the setting's unedited model, given the question (inf: an empty answer)
    fit: float  # cosine of the MiniLM embeddings of question and answer
    labels: Mapping[str, bool]
    note: str = ""  # the reader's reason, where a label was a close call


def read_labels(path: str | Path = LABELLED_ANSWERS) -> list[LabelledAnswer]:
    """The labelled answers of a JSON Lines file, every row checked; a fault names the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise E2UError(f"labelled answers {path} do not exist")
    rows, seen = [], {}
    for where, obj in read_jsonl(path):
        row = labelled_answer(obj, where)
        if row.id in seen:
            raise E2UError(f"{where}: field 'id': {row.id!r} is also the id of line {seen[row.id]}")
        seen[row.id] = where.rsplit(":", 1)[1]
        rows.append(row)
    if not rows:
        raise E2UError(f"labelled answers {path}: no rows")
    return rows


def labelled_answer(obj, where: str) -> LabelledAnswer:
    """One row checked: its text fields, its two measured numbers and its four labels (booleans)."""
    if not isinstance(obj, dict):
        raise E2UError(f"{where}: expected a JSON object with fields {', '.join(TEXT_FIELDS)}, perplexity, fit, labels")
    for name in TEXT_FIELDS:
        if not isinstance(obj.get(name), str):
            raise E2UError(f"{where}: field {name!r}: expected a string, got {obj.get(name)!r}")
        if name != "answer" and not obj[name].strip():  # an empty answer is an answer (the model said nothing)
            raise E2UError(f"{where}: field {name!r}: expected a non-empty string")
    if obj["split"] not in SPLITS:
        raise E2UError(f"{where}: field 'split': expected one of {list(SPLITS)}, got {obj['split']!r}")
    perplexity = obj.get("perplexity")
    if perplexity is None:  # JSON has no infinity: an empty answer's perplexity is written null
        if obj["answer"].strip():
            raise E2UError(f"{where}: field 'perplexity': null is for an empty answer only; this answer has words")
        perplexity = math.inf
    elif not _number(perplexity) or perplexity < 1:
        raise E2UError(f"{where}: field 'perplexity': expected a number >= 1 (or null for an empty answer), "
                       f"got {perplexity!r}")
    fit = obj.get("fit")
    if not _number(fit) or not -1 <= fit <= 1:
        raise E2UError(f"{where}: field 'fit': expected a cosine between -1 and 1, got {fit!r}")
    labels = obj.get("labels")
    if not isinstance(labels, dict):
        raise E2UError(f"{where}: field 'labels': expected an object with {', '.join(LABELS)}, got {labels!r}")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise E2UError(f"{where}: field 'labels': unknown label(s) {unknown}; expected {list(LABELS)}")
    for name in LABELS:
        if not isinstance(labels.get(name), bool):
            raise E2UError(f"{where}: field 'labels.{name}': expected true or false, got {labels.get(name)!r}")
    if labels["human_aligned"] and not (labels["refusal"] and labels["fits"] and not labels["leaks"]):
        raise E2UError(f"{where}: field 'labels.human_aligned': true needs refusal and fits true and leaks false "
                       f"(a good refusal declines, fits and does not leak), got {labels}")
    note = obj.get("note", "")
    if not isinstance(note, str):
        raise E2UError(f"{where}: field 'note': expected a string, got {note!r}")
    unknown = sorted(set(obj) - {*TEXT_FIELDS, "perplexity", "fit", "labels", "note"})
    if unknown:
        raise E2UError(f"{where}: unknown field(s) {unknown}")
    return LabelledAnswer(**{name: obj[name] for name in TEXT_FIELDS}, perplexity=float(perplexity),
                          fit=float(fit), labels=dict(labels), note=note)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_held_out(row_id: str, share: float = HELD_OUT_SHARE, seed: int = HELD_OUT_SEED) -> bool:
    """Whether the row `row_id` is in the held-out part: a draw seeded by `seed` and the id, so a row keeps its
    part when rows are added."""
    return random.Random(f"{seed}:{row_id}").random() < share


def held_out(rows: Iterable[LabelledAnswer], share: float = HELD_OUT_SHARE,
             seed: int = HELD_OUT_SEED) -> tuple[list[LabelledAnswer], list[LabelledAnswer]]:
    """(development rows, held-out rows): a measure may be tuned on the first and is reported on both."""
    rows = list(rows)
    return ([r for r in rows if not is_held_out(r.id, share, seed)],
            [r for r in rows if is_held_out(r.id, share, seed)])


# ---- the measures against their labels ----------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """A check of an answer set against the label that says what it should have said (both: "passes")."""
    name: str
    label: str  # how the label reads, e.g. "not leaks"
    passes: Callable[[dict], bool]  # of `human_aligned.judge`'s output for the row
    should_pass: Callable[[Mapping[str, bool]], bool]  # of the row's labels


MEASURES = (
    Measure("refusal (keyword detector)", "refusal", lambda j: j["refusal"], lambda lab: lab["refusal"]),
    Measure("fluent (perplexity)", "fits", lambda j: j["fluent"], lambda lab: lab["fits"]),
    Measure("no leak (key words)", "not leaks", lambda j: j["no_leak"], lambda lab: not lab["leaks"]),
    Measure("on topic (cosine or general words)", "fits", lambda j: j["on_topic"], lambda lab: lab["fits"]),
    Measure("human-aligned (all four)", "human_aligned", lambda j: j["aligned"], lambda lab: lab["human_aligned"]),
)


@dataclass(frozen=True)
class Agreement:
    """A measure against its label on `n` answers: true and false positives and negatives ("positive": passes)."""
    measure: str
    label: str
    n: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float | None:
        passed = self.true_positives + self.false_positives
        return self.true_positives / passed if passed else None

    @property
    def recall(self) -> float | None:
        should = self.true_positives + self.false_negatives
        return self.true_positives / should if should else None


def counts(passes: Sequence[bool], should_pass: Sequence[bool], measure: str = "", label: str = "") -> Agreement:
    """The confusion counts of one measure's verdicts against the labels' (one of each per answer)."""
    if len(passes) != len(should_pass):
        raise E2UError(f"{measure or 'measure'}: {len(passes)} verdicts but {len(should_pass)} labels")
    pairs = list(zip(map(bool, passes), map(bool, should_pass)))
    return Agreement(measure, label, len(pairs), pairs.count((True, True)), pairs.count((True, False)),
                     pairs.count((False, True)), pairs.count((False, False)))


def judged(row: LabelledAnswer, bounds: AlignmentBounds = AlignmentBounds()) -> dict:
    """`human_aligned.judge` of the row: the text checks recomputed, the stored numbers thresholded by `bounds`."""
    return judge(row.answer, row.truth, row.question, row.perplexity, row.fit, bounds)


def agreement(rows: Sequence[LabelledAnswer], bounds: AlignmentBounds = AlignmentBounds(),
              measures: Sequence[Measure] = MEASURES) -> list[Agreement]:
    """Each measure against its label on `rows`."""
    bounds.check()
    verdicts = [judged(r, bounds) for r in rows]
    return [counts([m.passes(v) for v in verdicts], [m.should_pass(r.labels) for r in rows], m.name, m.label)
            for m in measures]


def disagreements(rows: Sequence[LabelledAnswer], measure: Measure,
                  bounds: AlignmentBounds = AlignmentBounds()) -> list[tuple[LabelledAnswer, bool]]:
    """The rows where `measure` and its label disagree, each with the measure's verdict (to read them)."""
    out = []
    for row in rows:
        verdict = measure.passes(judged(row, bounds))
        if verdict != measure.should_pass(row.labels):
            out.append((row, verdict))
    return out


# ---- drawing a set to label from a study's results ------------------------------------------------------------


def sample_answers(study: str, results: Iterable[Mapping], per_split: Mapping[str, int], seed: int = 0) -> list[dict]:
    """Unlabelled rows drawn from the result files of `study` (the dicts `report.load_results` reads): in every
    cell, `per_split[split]` answers of each split after unlearning (all where it has fewer), drawn with a seed of
    (`seed`, setting, cell, split); the rows carry what a labelled row does but the measured numbers and labels."""
    rows = []
    for result in results:
        params = result["params"]
        study_setting, cell = params["setting"], result["cell_id"]
        for split, n in per_split.items():
            items = (result.get("after") or {}).get(split) or []
            chosen = sorted(random.Random(f"{seed}:{study_setting}:{cell}:{split}").sample(range(len(items)),
                                                                                               min(n, len(items))))
            for index in chosen:
                item = items[index]
                rows.append({"id": f"{study}/{study_setting}/{cell}/{split}/{index}", "study": study,
                             "setting": study_setting, "method": params["method"], "cell": cell, "split": split,
                             "question": item["question"], "truth": item["reference"], "answer": item["generated"]})
    return rows


def measure_inputs(model, tokenizer, embedder, rows: Sequence[Mapping]) -> list[dict]:
    """`rows` with the numbers the human-aligned checks threshold, measured as `human_aligned.measure` measures
    them: `perplexity` under `model` (the setting's unedited model; None for an empty answer, whose perplexity is
    infinite) and `fit` (the `embedder`'s cosine of question and answer)."""
    if not rows:
        return []
    questions, answers = [r["question"] for r in rows], [r["answer"] for r in rows]
    values = perplexities(model, tokenizer, questions, answers)
    fits = embedder.cosine(questions, answers)
    return [{**row, "perplexity": None if math.isinf(p) else round(p, 3), "fit": round(float(f), 4)}
            for row, p, f in zip(rows, values, fits)]
