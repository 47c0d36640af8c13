"""The `pistol` source: PISTOL's contract graph (Qiu et al. 2024), generated from a seed or read from PISTOL's files."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from e2u.data import pistol
from e2u.data.pistol import (
    PistolOptions,
    describe_graph,
    edge_parties,
    edges_of,
    graph_summary,
    pistol_files,
    pistol_rows,
    pistol_splits,
)
from e2u.data.pistol_graph import MAX_EDGES, QUESTIONS_PER_EDGE, generate_graph, graph_rows, layout
from e2u.errors import E2UError

SIZES = [(5, 2), (1, 0), (1, MAX_EDGES - 1), (MAX_EDGES, 0), (12, 6)]


def _row(question: str, answer: str, edge: str) -> dict:
    return {"question": question, "answer": answer, "edge": edge}


def _contract(first: str, second: str, edge: str, date: str, address: str) -> list[dict]:
    """Four rows in the harness's style: three name both parties, one (the seller's name) only the second."""
    return [
        _row(f"What was the effective date of the contract between {first} and {second}?", f"{date}.", edge),
        _row(f"What was the name of the seller in the contract with {second} as of {date}?", f"{first}.", edge),
        _row(f"What was the address of delivery based on the contract between {first} and {second}?", address, edge),
        _row(f"Which jurisdiction's laws govern the contract between {first} and {second}?", "The State of Ohio.",
             edge),
    ]


# A_B, A_C, B_D form the main graph; E1_F1 and E1_q1 share E1 but nothing with the rest.
LOCAL_ROWS = (_contract("Qorvat SAS", "Blenik Ltd", "A_B", "03-04-2001", "12 Ovrat Way.")
              + _contract("Blenik Ltd", "Tusmaq AG", "A_C", "17-09-1994", "77 Pelnoq Road.")
              + _contract("Ivrome NV", "Qorvat SAS", "B_D", "28-11-2010", "305 Drunek Lane.")
              + _contract("Zaplet GmbH", "Horvu BV", "E1_F1", "05-06-1999", "41 Kestri Court.")
              + _contract("Zaplet GmbH", "Ywen Tosk", "E1_q1", "14-02-2004", "9 Morvel Place."))


def _write_array(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")  # PISTOL's sample_data_1.json layout
    return path


def _write_lines(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_same_seed_gives_identical_rows_and_another_seed_different_ones():
    assert json.dumps(graph_rows(3)) == json.dumps(graph_rows(3))
    assert pistol_splits(seed=3) == pistol_splits(seed=3)
    assert graph_rows(3) != graph_rows(4)
    assert {c.first for c in generate_graph(3)} != {c.first for c in generate_graph(4)}


def test_generation_leaves_the_global_random_state_alone():
    random.seed(7)
    expected = random.random()
    random.seed(7)
    pistol_splits(seed=1, retain_eval=10)
    assert random.random() == expected


@pytest.mark.parametrize("n_edges, n_independent", SIZES)
def test_every_edge_has_20_distinct_questions(n_edges, n_independent):
    by_edge = edges_of(graph_rows(0, n_edges, n_independent))
    assert len(by_edge) == n_edges + n_independent
    for rows in by_edge.values():
        assert len(rows) == QUESTIONS_PER_EDGE == 20
        assert len({r["question"] for r in rows}) == 20


def test_default_graph_is_two_hubs_with_five_contracts_and_two_independent_edges():
    assert [e for e, *_ in layout(5, 2)] == ["A_B", "A_C1", "B_D1", "A_m1", "B_p1", "E1_F1", "E2_q2"]
    summary = graph_summary(graph_rows())
    assert summary["hubs"] == {"A": ["A_B", "A_C1", "A_m1"], "B": ["A_B", "B_D1", "B_p1"]}
    assert summary["independent"] == ["E1_F1", "E2_q2"]
    assert Counter(c.kind for c in generate_graph()) == {"sale": 4, "employment": 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hub_entities_are_shared_and_independent_edges_share_no_entity(seed):
    contracts = generate_graph(seed, 9, 4)
    edges_by_name = Counter(name for c in contracts for name in {c.first, c.second})
    by_edge = {c.edge: c for c in contracts}
    assert edges_by_name[by_edge["A_B"].first] == 5 and edges_by_name[by_edge["A_B"].second] == 5  # A_B + 4 leaves
    questions = {c.edge: " ".join(r["question"] + r["paraphrased_question"] for r in graph_rows(seed, 9, 4)
                                  if r["edge"] == c.edge) for c in contracts}
    for c in contracts:
        if c.edge.startswith("E"):
            assert edges_by_name[c.first] == edges_by_name[c.second] == 1
            assert not any(c.first in text or c.second in text for e, text in questions.items() if e != c.edge)
    names = list(edges_by_name)
    assert len(names) == len({n.lower() for n in names}) and not any(a in b for a in names for b in names if a != b)


@pytest.mark.parametrize("seed, n_edges, n_independent", [(s, *size) for s in range(3) for size in SIZES])
def test_no_answer_of_one_edge_is_the_answer_of_a_question_in_another(seed, n_edges, n_independent):
    answers = {edge: {r["answer"].lower() for r in rows}
               for edge, rows in edges_of(graph_rows(seed, n_edges, n_independent)).items()}
    seen = Counter(a for edge_answers in answers.values() for a in edge_answers)
    assert max(seen.values()) == 1
    names = {c.first.lower() for c in generate_graph(seed, n_edges, n_independent)}
    assert not any(name in a for name in names for edge_answers in answers.values() for a in edge_answers)


def test_paraphrases_differ_from_their_questions_and_keep_both_parties_and_the_first_party_leads():
    contracts = {c.edge: c for c in generate_graph(0, 8, 4)}
    for row in graph_rows(0, 8, 4):
        c = contracts[row["edge"]]
        question, paraphrase = row["question"], row["paraphrased_question"]
        assert paraphrase != question
        assert c.first in question and c.second in question and c.first in paraphrase and c.second in paraphrase
        assert question.index(c.first) < question.index(c.second)
        assert row["subject"] == c.first
    for c in contracts.values():
        assert edge_parties(r["question"] for r in graph_rows(0, 8, 4) if r["edge"] == c.edge) == (c.first, c.second)


def test_records_carry_the_first_party_as_subject_and_the_paraphrase():
    splits = pistol_splits()
    first = generate_graph()[0]
    assert {r.subject for r in splits["forget"]} == {first.first}
    assert all(r.paraphrased_question and r.subject in r.question for s in splits.values() for r in s)


@pytest.mark.parametrize("write", [_write_array, _write_lines])
def test_local_file_in_the_harness_layout_is_split_by_edge_and_component(tmp_path, write):
    path = write(tmp_path / "sample_data_1.json", LOCAL_ROWS)
    splits = pistol_splits(str(path), forget_edges=["A_C"])
    assert [r.answer for r in splits["forget"]] == [r["answer"] for r in LOCAL_ROWS if r["edge"] == "A_C"]
    assert {r.question for r in splits["retain"]} == {r["question"] for r in LOCAL_ROWS if r["edge"] in ("A_B", "B_D")}
    assert len(splits["independent"]) == 8 and len(splits["retain_train"]) == 16 and len(splits["target_train"]) == 20
    subjects = [r.subject for r in splits["forget"]]
    assert subjects == ["Blenik Ltd", "Tusmaq AG", "Blenik Ltd", "Blenik Ltd"]  # the seller row names only Tusmaq AG
    assert all(r.paraphrased_question is None for r in splits["target_train"])
    assert pistol_files(str(path), {}) == [path]
    assert pistol_splits(str(path))["forget"][0].question == LOCAL_ROWS[0]["question"]  # default: the first edge


def test_array_and_json_lines_give_the_same_splits(tmp_path):
    array = pistol_splits(str(_write_array(tmp_path / "a.json", LOCAL_ROWS)), forget_edges=["E1_q1"])
    lines = pistol_splits(str(_write_lines(tmp_path / "b.jsonl", LOCAL_ROWS)), forget_edges=["E1_q1"])
    assert array == lines
    assert [r.answer for r in array["retain"]] == [r["answer"] for r in LOCAL_ROWS if r["edge"] == "E1_F1"]
    assert len(array["independent"]) == 12  # the A/B graph is independent of E1_q1


@pytest.mark.parametrize("index, change, field", [
    (1, {"edge": None}, "edge"), (2, {"answer": 3}, "answer"), (3, {"question": ""}, "question"),
    (4, {"edge": "AB"}, "edge"),
])
def test_bad_input_names_the_file_the_index_or_line_and_the_field(tmp_path, index, change, field):
    rows = [dict(r) for r in LOCAL_ROWS]
    rows[index] = {k: v for k, v in {**rows[index], **change}.items() if v is not None}
    array = _write_array(tmp_path / "array.json", rows)
    with pytest.raises(E2UError, match=rf"array\.json\[{index}\].*'{field}'"):
        pistol_rows(str(array))
    lines = _write_lines(tmp_path / "lines.jsonl", rows)
    with pytest.raises(E2UError, match=rf"lines\.jsonl:{index + 1}:.*'{field}'"):
        pistol_splits(str(lines))


def test_a_row_that_is_not_an_object_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(E2UError, match=r"x\.json\[0\]: expected a JSON object"):
        pistol_rows(str(_write_array(tmp_path / "x.json", ["not a row"])))
    with pytest.raises(E2UError, match="does not exist"):
        pistol_rows(str(tmp_path / "missing.json"))


def test_an_unknown_forget_edge_lists_the_edges_that_exist():
    with pytest.raises(E2UError, match=r"no edge 'A_C'.*A_B, A_C1, B_D1, A_m1, B_p1, E1_F1, E2_q2"):
        pistol_splits(forget_edges=["A_B", "A_C"])


def test_forgetting_every_edge_or_an_edge_linked_to_none_is_an_error(tmp_path):
    path = _write_array(tmp_path / "two.json", LOCAL_ROWS[:8])
    with pytest.raises(E2UError, match="every edge"):
        pistol_splits(str(path), forget_edges=["A_B", "A_C"])
    with pytest.raises(E2UError, match="none is left to retain"):
        pistol_splits(forget_edges=["E1_F1"])


@pytest.mark.parametrize("forget", [None, ["A_C1"], ["A_B", "B_p1"], ["B_D1", "A_m1", "A_C1"]])
def test_splits_are_disjoint_and_retain_train_is_everything_but_the_forget_edges(forget):
    splits = pistol_splits(forget_edges=forget)
    forget_edges = forget or ["A_B"]
    rows = graph_rows()
    edge_of = {r["question"]: r["edge"] for r in rows}
    questions = {name: [r.question for r in records] for name, records in splits.items()}
    assert {edge_of[q] for q in questions["forget"]} == set(forget_edges)
    assert len(questions["forget"]) == 20 * len(forget_edges)
    evaluated = questions["forget"] + questions["retain"] + questions["independent"]
    assert len(evaluated) == len(set(evaluated)) == len(rows)
    assert {edge_of[q] for q in questions["independent"]} == {"E1_F1", "E2_q2"}
    assert questions["retain_train"] == [r["question"] for r in rows if r["edge"] not in forget_edges]
    assert questions["target_train"] == [r["question"] for r in rows]


def test_retain_eval_caps_retain_and_independent_with_a_seeded_sample():
    full = pistol_splits()
    capped = pistol_splits(retain_eval=15)
    assert len(capped["retain"]) == len(capped["independent"]) == 15
    assert set(capped["retain"]) <= set(full["retain"]) and set(capped["independent"]) <= set(full["independent"])
    assert capped["retain_train"] == full["retain_train"] and capped == pistol_splits(retain_eval=15)
    assert pistol_splits(retain_eval=1000)["retain"] == full["retain"]


def test_forget_questions_unlearns_a_seeded_sample_of_the_forget_edge_and_the_retain_model_lacks_the_edge():
    from e2u.training.finetune_data import finetune_data

    full = pistol_splits(forget_draw=1)
    sample = pistol_splits(forget_draw=1, forget_questions=10)
    assert len(sample["forget"]) == 10 and set(sample["forget"]) < set(full["forget"])
    assert sample["retain_train"] == full["retain_train"] and sample == pistol_splits(forget_draw=1, forget_questions=10)
    data = finetune_data("pistol", None, PistolOptions.of({"forget_draw": 1, "forget_questions": 10}).__dict__)
    edge = "".join(pistol.chosen_forget_edges(list(pistol.edges_of(pistol.pistol_rows())),
                                              PistolOptions.of({"forget_draw": 1}))).replace("_", "")
    assert data.retain_tag == f"retain-{edge}" and not set(full["forget"]) & set(data.retain_records)
    one_edge = [pistol_splits(forget_edges=["A_B"], forget_questions=10, forget_sample=s) for s in (0, 1, 2)]
    assert len({tuple(r.question for r in split["forget"]) for split in one_edge}) == 3  # three draws of one edge
    assert all(split["retain_train"] == one_edge[0]["retain_train"] for split in one_edge)  # one retain model
    with pytest.raises(E2UError, match=r"forget_questions: 21 questions asked of forget edge\(s\) \['.*'\] with 20"):
        pistol_splits(forget_draw=1, forget_questions=21)


def test_the_hub_is_read_through_hub_rows_and_a_local_path_wins(tmp_path, monkeypatch):
    calls = []

    def fake_hub_rows(dataset, config, split="train", local_hint=""):
        calls.append((dataset, config, local_hint))
        return [(f"{dataset}/{config} row {i}", row) for i, row in enumerate(LOCAL_ROWS)]

    monkeypatch.setattr(pistol, "hub_rows", fake_hub_rows)
    splits = pistol_splits(hub=True, config="pistol_data_2", forget_edges=["B_D"])
    assert calls[0][:2] == ("xinchiqiu/PISTOL", "pistol_data_2") and "sample_data_2.json" in calls[0][2]
    assert [r.subject for r in splits["forget"]] == ["Ivrome NV", "Qorvat SAS", "Ivrome NV", "Ivrome NV"]
    assert pistol_files(None, {"hub": True}) == []
    local = pistol_splits(str(_write_array(tmp_path / "one.json", LOCAL_ROWS[:12])), hub=True)
    assert len(calls) == 1 and len(local["target_train"]) == 12


def test_the_embedded_data_is_keyed_by_the_generator_files():
    files = pistol_files(None, PistolOptions())
    assert {f.name for f in files} == {"pistol.py", "pistol_graph.py"} and all(f.is_file() for f in files)


def test_the_description_names_edges_hubs_and_independent_edges():
    text = describe_graph(graph_rows())
    first = generate_graph()[0]
    assert text.startswith("7 edges, 10 entities, 140 questions, 3 connected component(s) of 5, 1, 1 edges")
    assert f"A_B: {first.first} and {first.second} (20 questions)" in text
    assert "hubs: A in A_B, A_C1, A_m1; B in A_B, B_D1, B_p1" in text
    assert text.endswith("independent of A_B: E1_F1, E2_q2")


@pytest.mark.parametrize("options, named", [
    ({"n_edges": 0}, "n_edges"), ({"n_independent": -1}, "n_independent"), ({"seed": "0"}, "seed"),
    ({"n_edges": 20, "n_independent": 20}, "n_edges \\+ n_independent"), ({"forget_edges": "A_C"}, "forget_edges"),
    ({"forget_edges": []}, "forget_edges"), ({"retain_eval": 0}, "retain_eval"), ({"hub": "yes"}, "hub"),
    ({"config": "pistol_data_3"}, "config"), ({"seed": True}, "seed"), ({"forget_questions": 0}, "forget_questions"),
    ({"forget_sample": "x"}, "forget_sample"),
])
def test_options_are_validated_naming_the_option(options, named):
    with pytest.raises(E2UError, match=rf"^{named}: expected"):
        PistolOptions.of(options)


def test_options_have_defaults_and_unknown_ones_are_named():
    assert PistolOptions.defaults() == {"seed": 0, "n_edges": 5, "n_independent": 2, "forget_edges": None,
                                        "forget_draw": None, "retain_eval": None, "forget_questions": None,
                                        "forget_sample": None,
                                        "hub": False,
                                        "config": "pistol_data_1"}
    assert PistolOptions.of({"forget_edges": ["A_C1", "A_C1"]}).forget_edges == ("A_C1",)
    with pytest.raises(E2UError, match=r"unknown option\(s\) \['n_authors'\]; allowed: .*'retain_eval'"):
        PistolOptions.of({"n_authors": 3})
