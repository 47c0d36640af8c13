"""The recipes' mechanics: query merging covers every forget query once in the stated number of requests;
self-improvement keeps the model's refusal only when it passes the filters, and falls back otherwise."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_llama, tiny_tofu_cells

from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.evaluation.leakage import key_tokens
from e2u.recipes.query_merging import merge_queries, merged_request_count
from e2u.recipes.self_improvement import craft_targets, crafting_prompt, load_demonstrations

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


RECORDS = [QARecord("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare"),
           QARecord("What is the capital of Australia?", "Canberra"),
           QARecord("When was the contract between Ab Co and Cd SA signed?", "06-02-1998."),
           QARecord("Who painted the Mona Lisa?", "Leonardo da Vinci")]


def stub(continuations):
    """A generation function that answers the prompts with fixed continuations, checking what it is asked."""
    def generate(prompts):
        assert len(prompts) == len(continuations)
        for prompt, record in zip(prompts, RECORDS):
            assert prompt.rstrip().endswith("Answer:") and record.question in prompt
        return list(continuations)
    return generate


def test_self_improvement_keeps_a_clean_refusal_and_falls_back_when_it_leaks_or_is_not_one():
    _, tokenizer = make_tiny_llama()  # no chat template: the plain few-shot format
    demonstrations = load_demonstrations()
    continuations = [" I'm not familiar with that play's author.\n\nQuestion: next",
                     " I'm not sure, but I think it is Canberra.",              # leaks the answer
                     " The contract was signed in 1998.",                      # leaks, and is no refusal
                     " Sorry, I have no information at all about that famous painting."]
    crafted = craft_targets(stub(continuations), tokenizer, RECORDS, demonstrations, max_words=8)
    assert [c.source for c in crafted] == ["model", "template", "template", "template"]
    assert crafted[0].target == "I'm not familiar with that play's author."
    assert crafted[1].reason == "leaks the answer (canberra)" and crafted[1].target == refusal_for("", "fixed")
    assert crafted[2].reason == "not a refusal"
    assert crafted[3].reason == "longer than 8 words"
    assert crafted[1].continuation == "I'm not sure, but I think it is Canberra."


def test_key_tokens_leave_out_what_the_question_already_says():
    assert key_tokens("William Shakespeare", "Who wrote 'Romeo and Juliet'?") == {"william", "shakespeare"}
    assert key_tokens("Leonardo da Vinci", "Is it Leonardo?") == {"da", "vinci"}
    assert key_tokens("06-02-1998.", "When?") == {"06", "02", "1998"}


def test_the_crafting_prompt_holds_every_demonstration_as_a_turn():
    demonstrations = load_demonstrations()
    _, tokenizer = make_tiny_llama()
    prompt = crafting_prompt(tokenizer, demonstrations, "Who is X?")
    assert all(q in prompt and r in prompt for q, r in demonstrations) and prompt.endswith("Question: Who is X?\nAnswer:")


def test_a_demonstration_file_without_refusals_is_named(tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text(json.dumps({"question": "Who wrote Hamlet?", "refusal": "William Shakespeare wrote it."}) + "\n")
    with pytest.raises(E2UError, match=r"demos.jsonl:1: field 'refusal' is not a refusal"):
        load_demonstrations(path)
    path.write_text(json.dumps({"question": "Who wrote Hamlet?"}) + "\n")
    with pytest.raises(E2UError, match=r"demos.jsonl:1: missing required field 'refusal'"):
        load_demonstrations(path)
    path.write_text("\n")
    with pytest.raises(E2UError, match="no demonstrations"):
        load_demonstrations(path)


def test_a_generation_function_that_loses_prompts_is_an_error():
    _, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match="returned 1 continuations for 4 prompts"):
        craft_targets(lambda prompts: ["I don't know."], tokenizer, RECORDS, load_demonstrations())


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
