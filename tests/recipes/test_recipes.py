"""The recipes' mechanics: query merging covers every forget query once in the stated number of requests; a
study cell runs with both recipes and saves its crafted targets (self-improvement's own tests:
test_self_improvement.py)."""

from __future__ import annotations

import pytest
from conftest import tiny_tofu_cells

from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.recipes.query_merging import merge_queries, merged_request_count

FORGET = [QARecord(f"What is attribute {i} of the contract between {s}?", f"value {i}", s)
          for i, s in enumerate(["Ab Co and Cd SA"] * 7 + ["Ef Ltd and Gh AG"] * 3 + [None] * 2)]


def fixed(prompt: str) -> str:
    return refusal_for(prompt, "fixed")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 12])
def test_query_merging_covers_every_query_once_in_the_stated_number_of_requests(size):
    requests = merge_queries(FORGET, size, fixed)
    assert len(requests) == merged_request_count(FORGET, size)
    # subjects of 7, 3 and two of their own: ceil(7/size) + ceil(3/size) + 2
    assert len(requests) == -(-7 // size) + -(-3 // size) + 2
    covered = [q for r in requests for q in [f.question for f in FORGET] if q in r.question]
    assert sorted(covered) == sorted(f.question for f in FORGET)
    for request in requests:
        members = [f for f in FORGET if f.question in request.question]
        assert 1 <= len(members) <= size and len({m.subject for m in members}) == 1
        assert request.subject == members[0].subject and request.target == fixed(request.question)


def test_query_merging_bad_group_sizes_are_named():
    with pytest.raises(E2UError, match=r"group_size 13 is larger than the forget set \(12 questions\)"):
        merge_queries(FORGET, 13, fixed)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(E2UError, match="group_size: expected an integer >= 1"):
            merge_queries(FORGET, bad, fixed)


def test_the_problem_hands_editors_the_recipes_requests():
    from e2u.problem import UnlearningProblem

    plain = UnlearningProblem(FORGET).edit_requests()
    assert [r.question for r in plain] == [f.question for f in FORGET] and {r.target for r in plain} == {fixed("")}
    crafted = UnlearningProblem(FORGET, targets={FORGET[0].question: "I don't know that contract."}).edit_requests()
    assert crafted[0].target == "I don't know that contract." and crafted[1].target == fixed("")
    merged = UnlearningProblem(FORGET, merge_group=3).edit_requests()
    assert len(merged) == merged_request_count(FORGET, 3) == 3 + 1 + 2


def test_a_study_cell_runs_with_both_recipes_and_saves_the_crafted_targets(tmp_path):
    from e2u.cell.run import run_cell

    (cell,) = tiny_tofu_cells(tmp_path, "  - {name: grace, label: grace-self, refusal: self, merge_group: 2, hparams: "
                                        "{layer: 2, n_iter: 2, max_retain_routing: 1.0}}\n", name="recipes")
    assert (cell.refusal, cell.merge_group) == ("self", 2)
    result = run_cell(cell)
    crafted = result["crafted_targets"]
    assert [c["question"] for c in crafted] == [r["question"] for r in result["after"]["forget"]]
    # a random model writes no refusal: every target falls back to the template, each with its reason
    assert {c["source"] for c in crafted} == {"template"} and all(c["reason"] for c in crafted)
    assert result["params"]["merge_group"] == 2  # the merged requests themselves: the problem test above


@pytest.mark.parametrize("entry, message", [
    ("refusal: clever", r"parameter refusal: expected 'fixed', 'sampled' or 'self'"),
    ("merge_group: -2", r"parameter merge_group: expected a non-negative integer"),
    ("chunks: 0", r"parameter chunks: expected an integer >= 1, got 0"),
])
def test_a_bad_recipe_in_a_study_is_named(tmp_path, entry, message):
    from e2u.study.grid import load_study

    study = tmp_path / "study.yaml"
    study.write_text("name: bad\nsettings:\n  - {name: p, data: {source: mini}}\n"
                     f"methods:\n  - {{name: rome, {entry}}}\n")
    with pytest.raises(E2UError, match=r"methods\[0\].*" + message):
        load_study(study)
