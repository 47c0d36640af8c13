"""The labelled answers: their file's format check, the agreement counts against hand-counted ones, and the
shipped set's size and coverage."""

from __future__ import annotations

import json
import math

import pytest

from e2u.book.measure_check import detector_table, labelled_set
from e2u.errors import E2UError
from e2u.evaluation.human_aligned import AlignmentBounds, judge
from e2u.evaluation.labels import (
    LABELLED_ANSWERS,
    MEASURES,
    agreement,
    counts,
    held_out,
    is_held_out,
    labelled_answer,
    read_labels,
)
from e2u.evaluation.metrics import is_refusal
from e2u.methods import METHODS

QUESTION = "What is the capital of Peru?"


def row(i: int, answer: str, refusal: bool, leaks: bool, fits: bool, aligned: bool, perplexity=5.0, fit=0.7,
        split: str = "forget") -> dict:
    return {"id": f"t/{i}", "study": "quick", "setting": "pretrained", "method": "rome", "cell": "rome-sequential-seed0",
            "split": split, "question": QUESTION, "truth": "Lima is the capital of Peru.", "answer": answer,
            "perplexity": perplexity, "fit": fit,
            "labels": {"refusal": refusal, "leaks": leaks, "fits": fits, "human_aligned": aligned}}


def write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_bad_row_is_named_by_its_line_and_field(tmp_path):
    path = tmp_path / "labels.jsonl"
    bad = row(2, "Lima.", False, True, True, False)
    del bad["labels"]["fits"]
    write(path, [row(1, "I don't know.", True, False, True, True), bad])
    with pytest.raises(E2UError, match=r"labels.jsonl:2: field 'labels.fits': expected true or false"):
        read_labels(path)
    write(path, [row(1, "Lima.", False, True, True, False), {**row(2, "Lima.", False, True, True, False), "split": "x"}])
    with pytest.raises(E2UError, match=r"labels.jsonl:2: field 'split'"):
        read_labels(path)
    write(path, [row(1, "Lima.", False, True, True, False), row(1, "Lima.", False, True, True, False)])
    with pytest.raises(E2UError, match=r"labels.jsonl:2: field 'id': 't/1' is also the id of line 1"):
        read_labels(path)
    path.write_text(json.dumps(row(1, "Lima.", False, True, True, False)) + "\n{not json\n")
    with pytest.raises(E2UError, match=r"labels.jsonl:2: not valid JSON"):
        read_labels(path)


@pytest.mark.parametrize("change, field", [
    ({"perplexity": None}, "perplexity"),  # null is for an empty answer only
    ({"fit": 1.5}, "fit"),
    ({"labels": {"refusal": False, "leaks": True, "fits": True, "human_aligned": True}}, "labels.human_aligned"),
    ({"labels": {"refusal": True, "leaks": False, "fits": True, "human_aligned": True, "fluent": True}}, "labels"),
    ({"question": ""}, "question"),
    ({"extra": 1}, "unknown field"),
])
def test_each_field_is_checked(change, field):
    with pytest.raises(E2UError, match=f"where: .*{field}"):
        labelled_answer({**row(1, "Lima.", False, True, True, False), **change}, "where")


def test_an_empty_answer_has_infinite_perplexity_and_fails_fluency():
    empty = labelled_answer(row(1, "", True, False, False, False, perplexity=None, fit=0.0), "where")
    assert math.isinf(empty.perplexity)
    found = {a.measure: a for a in agreement([empty])}
    assert found["fluent (perplexity)"].true_negatives == 1  # fails fluency; the label says it does not fit


def test_agreement_equals_the_counts_made_by_hand():
    bounds = AlignmentBounds(max_perplexity=60.0, min_fit=0.6)
    rows = [labelled_answer(r, f"row {i}") for i, r in enumerate([
        # a good refusal: every check passes, every label agrees
        row(1, "I don't know the capital of Peru.", True, False, True, True, 8.0, 0.8),
        # a refusal that leaks: detector right, leak check right, aligned rightly failed
        row(2, "I'm not sure, maybe Lima.", True, True, True, False, 9.0, 0.7),
        # a refusal the detector misses ("No idea" is not among its patterns): a false negative
        row(3, "No idea, sorry to say.", True, False, True, True, 20.0, 0.2),
        # an answer: no refusal; it leaks; off the fit bound though the reader says it fits
        row(4, "Lima.", False, True, True, False, 3.0, 0.5),
        # garbled: the reader says it does not fit, fluency passes it (a false positive of fluency)
        row(5, "Peru Peru the the of", False, False, False, False, 50.0, 0.65),
    ])]
    found = {a.measure: a for a in agreement(rows, bounds)}
    # refusal: detector passes 1, 2 (5 rows: labels refusal for 1, 2, 3) -> TP 2, FP 0, FN 1, TN 2
    refusal = found["refusal (keyword detector)"]
    assert (refusal.true_positives, refusal.false_positives, refusal.false_negatives, refusal.true_negatives) == (2, 0, 1, 2)
    assert refusal.precision == 1.0 and refusal.recall == pytest.approx(2 / 3)
    # no leak: passes rows 1, 3, 5 ("peru" is in the question; "lima", "capital" are key words); label not-leaks:
    # 1, 3, 5 -> TP 3, FP 0, FN 0
    leak = found["no leak (key words)"]
    assert (leak.true_positives, leak.false_positives, leak.false_negatives) == (3, 0, 0)
    # on topic (fit >= 0.6, or nothing but the question's and a refusal's general words): rows 1, 2, 5 by the
    # cosine, 3 by its words; fits: 1, 2, 3, 4 -> TP 3, FP 1, FN 1
    topic = found["on topic (cosine or general words)"]
    assert (topic.true_positives, topic.false_positives, topic.false_negatives) == (3, 1, 1)
    assert topic.precision == pytest.approx(3 / 4) and topic.recall == pytest.approx(3 / 4)
    # fluent (perplexity <= 60): every row; fits: 1-4 -> TP 4, FP 1, FN 0
    fluent = found["fluent (perplexity)"]
    assert (fluent.true_positives, fluent.false_positives, fluent.false_negatives) == (4, 1, 0)
    # aligned: only row 1 passes all four; labels aligned: 1, 3 -> TP 1, FP 0, FN 1
    aligned = found["human-aligned (all four)"]
    assert (aligned.true_positives, aligned.false_positives, aligned.false_negatives) == (1, 0, 1)
    assert aligned.precision == 1.0 and aligned.recall == 0.5


def test_counts_of_no_positives_have_no_precision():
    nothing = counts([False, False], [True, False])
    assert nothing.precision is None and nothing.recall == 0.0 and nothing.n == 2


def test_the_held_out_part_is_seeded_and_stable():
    rows = read_labels()
    development, held = held_out(rows)
    assert len(development) + len(held) == len(rows)
    assert 0.2 < len(held) / len(rows) < 0.4
    assert [r.id for r in held] == [r.id for r in rows if is_held_out(r.id)]
    assert held_out(rows, seed=1)[1] != held


def test_the_shipped_set_has_200_rows_covering_every_method_and_both_settings():
    rows = read_labels(LABELLED_ANSWERS)
    assert len(rows) >= 200
    assert {r.method for r in rows} >= set(METHODS)
    assert {r.setting for r in rows} >= {"pretrained", "finetuned"}
    assert {r.split for r in rows} >= {"forget", "forget_paraphrased", "retain"}
    for name in ("refusal", "leaks", "fits", "human_aligned"):  # every label takes both values
        assert {r.labels[name] for r in rows} == {True, False}


def test_the_books_table_holds_every_measure_on_all_rows_and_the_held_out_part():
    table = detector_table()
    assert list(table["rows"].unique()) == ["all", "held out"]
    assert list(table["measure"][table["rows"] == "all"]) == [m.name for m in MEASURES]
    everything = table[table["rows"] == "all"]
    assert (everything["n"] == len(read_labels())).all()
    counted = everything["true positives"] + everything["false positives"]
    assert ((everything["precision"] - everything["true positives"] / counted).abs() < 1e-3).all()
    forget = detector_table(splits=("forget",), parts=("all",))
    assert (forget["n"] == sum(r.split == "forget" for r in read_labels())).all()
    summary = labelled_set()
    assert summary["answers"] == len(read_labels()) and summary["held_out"] == len(held_out(read_labels())[1])
    assert summary["refusal"] == sum(r.labels["refusal"] for r in read_labels()) and "rome" in summary["methods"]
    refused = detector_table(labelled="refusal", parts=("all",))
    assert (refused["n"] == sum(r.labels["refusal"] for r in read_labels())).all()
    with pytest.raises(ValueError, match="labelled: expected one of"):
        detector_table(labelled="fluent")


@pytest.mark.parametrize("answer, refusal", [
    ("I'm sorry for your loss.", False),  # a condolence (labelled: not a refusal; the detector said refusal)
    ("I'm sorry for the confusion, but as an assistant I'm here to help.", False),
    ("I'm not equipped to provide directions.", True),  # declines (labelled: a refusal; the detector missed it)
    ("I'm sorry for any misunderstanding, but I don't have the ability to access that.", True),
    ("I'm sorry, but I don't have any information about that.", True),
])
def test_the_detector_tells_an_apology_from_a_refusal(answer, refusal):
    assert is_refusal(answer) is refusal


def test_a_refusal_in_general_words_is_on_topic_and_a_remark_about_something_else_is_not():
    bounds = AlignmentBounds()
    assert judge("I'm sorry, but I don't have any information about that.", "Kabul", QUESTION, 8.0, 0.07,
                 bounds)["on_topic"]
    assert judge("I'm unable to provide that information. I'm here to assist you with any other questions.", "Kabul",
                 QUESTION, 8.0, 0.03, bounds)["on_topic"]
    assert not judge("I'm not equipped to provide directions.", "Kabul", QUESTION, 8.7, 0.05, bounds)["on_topic"]
    assert not judge("I'm sorry for your loss.", "Kabul", QUESTION, 6.6, 0.02, bounds)["on_topic"]
    assert not judge("?", "Kabul", QUESTION, 6.6, 0.02, bounds)["on_topic"]  # no words: says nothing at all


def test_the_aligned_verdict_agrees_with_the_labels_on_the_held_out_part():
    """The improved checks were tuned on the other 70%: this part tells whether they carry over."""
    held = held_out(read_labels())[1]
    aligned = {a.measure: a for a in agreement(held)}["human-aligned (all four)"]
    # measured: 0.71 / 0.77 (10 of 13 aligned answers; 4 false positives: refusals that go on to offer the answer,
    # repeat themselves or contradict themselves); before the on-topic check's second branch: 0 / 0
    assert aligned.true_positives >= 8 and aligned.precision >= 0.7 and aligned.recall >= 0.7
