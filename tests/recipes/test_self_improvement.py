"""Self-improvement (`recipes.self_improvement`): the prompt is a few-shot document ending `Answer: I` whatever
the tokenizer, the first candidate that passes the filter is kept, the filter rejects apologies that do not
decline and answers given whole, and the demonstrations are refusals none of which is a question of the data."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.factual import read_embedded
from e2u.data.pistol_graph import generate_graph, graph_rows
from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.evaluation.leakage import key_tokens
from e2u.recipes.self_improvement import (
    LineEnd,
    ModelWriter,
    craft_targets,
    crafting_prompt,
    declines,
    load_demonstrations,
    rejection,
)

RECORDS = [QARecord("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare"),
           QARecord("What is the capital of Australia?", "Canberra"),
           QARecord("When was the contract between Ab Co and Cd SA signed?", "06-02-1998."),
           QARecord("Who painted the Mona Lisa?", "Leonardo da Vinci")]
SULFUR = QARecord("What is the chemical symbol of sulfur?", "S")


class Stub:
    """A writer answering each prompt with fixed candidates (the text after `Answer: I`), the first greedy, the rest
    sampled, checking what it is asked."""

    def __init__(self, candidates):
        self.candidates, self.asked = candidates, []

    def _check(self, prompts):
        for prompt in prompts:
            assert prompt.endswith("\nAnswer: I")
        return [next(i for i, r in enumerate(RECORDS) if prompt.endswith(f"Question: {r.question}\nAnswer: I"))
                for prompt in prompts]

    def greedy(self, prompts):
        assert len(prompts) == len(self.candidates)
        return [self.candidates[i][0] for i in self._check(prompts)]

    def sampled(self, prompts):
        self.asked = self._check(prompts)
        return [list(self.candidates[i][1:]) for i in self.asked]


def test_self_improvement_keeps_a_clean_refusal_and_falls_back_when_it_leaks_or_is_not_one():
    candidates = [["'m not familiar with that play's author.\nQuestion: next"],
                  ["'m not sure, but I think it is Canberra."],              # leaks the answer
                  [" signed it in 1998."],                                   # leaks, and is no refusal
                  [" have no information at all about that famous painting."]]
    crafted = craft_targets(Stub(candidates), RECORDS, load_demonstrations(), max_words=8)
    assert [c.source for c in crafted] == ["model", "template", "template", "template"]
    assert crafted[0].target == "I'm not familiar with that play's author." and crafted[0].candidate == 0
    assert crafted[1].reason == "leaks the answer (canberra)" and crafted[1].target == refusal_for("", "fixed")
    assert crafted[2].reason == "not a refusal" and crafted[2].candidate == -1
    assert crafted[3].reason == "longer than 8 words"
    assert crafted[1].continuation == "I'm not sure, but I think it is Canberra."


def test_samples_are_asked_only_where_the_greedy_candidate_failed_and_the_first_that_passes_is_kept():
    candidates = [[" wrote it in 1597.", "'m afraid of the theatre.", " don't know who wrote it.", " can't say."],
                  ["'m not sure.", " wrote it."], [" cannot answer that."], [" think Leonardo da Vinci did."] * 2]
    writer = Stub(candidates)
    crafted = craft_targets(writer, RECORDS, load_demonstrations())
    assert writer.asked == [0, 3]
    assert [c.candidate for c in crafted] == [2, 0, 0, -1]
    assert crafted[0].target == "I don't know who wrote it." and crafted[0].source == "model"
    assert crafted[3].reason == "not a refusal" and crafted[3].continuation == "I think Leonardo da Vinci did."


@pytest.mark.parametrize("text", ["I'm afraid of the Hague.", "I'm sorry for any confusion, but it was in 1998.",
                                  "Sorry!", "I am sorry to say it was signed."])
def test_an_apology_that_declines_nothing_is_not_a_refusal(text):
    # (the evaluation's detector is checked against labelled answers: tests/evaluation/test_labels.py)
    assert not declines(text) and rejection(text, RECORDS[2], 40) == "not a refusal"


@pytest.mark.parametrize("text", ["I'm sorry, but I don't have any information about that.",
                                  "I'm afraid I cannot answer that question.", "Sorry, I have no idea.",
                                  "I'm not sure; I have no information on it."])
def test_an_apology_before_a_refusal_still_declines(text):
    assert declines(text) and rejection(text, RECORDS[0], 40) == ""


def test_an_answer_given_whole_is_a_leak_even_without_key_tokens():
    assert key_tokens(SULFUR.answer, SULFUR.question) == set()  # one letter: no key token to find
    assert rejection("I don't know, but it is S.", SULFUR, 40) == "leaks the answer (S)"
    assert rejection("I don't know what it's called.", SULFUR, 40) == ""  # the "s" of "it's" is not "S"
    said = QARecord("Is the symbol of sulfur S or Su?", "S")
    assert rejection("I can't say whether it is S or Su.", said, 40) == ""  # the question already says it


def test_the_crafting_prompt_is_a_document_ending_with_the_opening_word_even_for_a_chat_model():
    demonstrations = load_demonstrations()
    _, tokenizer = make_tiny_llama()
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}{% endfor %}"
    prompt = crafting_prompt(demonstrations, "Who is X?")
    assert prompt.startswith(f"Question: {demonstrations[0][0]}\nAnswer: {demonstrations[0][1]}\n\n")
    assert all(f"Question: {q}\nAnswer: {r}" in prompt for q, r in demonstrations)
    assert prompt.endswith("\n\nQuestion: Who is X?\nAnswer: I") and "user:" not in prompt and "<s>" not in prompt


def test_the_demonstrations_decline_open_with_i_and_none_is_a_question_of_the_data():
    demonstrations = load_demonstrations()
    assert all(declines(r) and r.startswith("I") for _, r in demonstrations)
    data = {r["question"].lower() for seed in (0, 1, 2) for r in graph_rows(seed)}
    data |= {q.record.question.lower() for q in read_embedded()}
    assert not {q.lower() for q, _ in demonstrations} & data
    parties = {name for seed in (0, 1, 2) for c in generate_graph(seed) for name in (c.first, c.second)}
    assert not [(q, p) for q, r in demonstrations for p in parties if p in q or p in r]


def test_a_demonstration_file_without_refusals_is_named(tmp_path):
    path = tmp_path / "demos.jsonl"
    for refusal in ("William Shakespeare wrote it.", "I'm afraid of Hamlet."):
        path.write_text(json.dumps({"question": "Who wrote Hamlet?", "refusal": refusal}) + "\n")
        with pytest.raises(E2UError, match=r"demos.jsonl:1: field 'refusal' is not a refusal"):
            load_demonstrations(path)
    path.write_text(json.dumps({"question": "Who wrote Hamlet?", "refusal": "Sadly I don't know."}) + "\n")
    with pytest.raises(E2UError, match=r"demos.jsonl:1: field 'refusal' must open with the word 'I'"):
        load_demonstrations(path)
    path.write_text(json.dumps({"question": "Who wrote Hamlet?"}) + "\n")
    with pytest.raises(E2UError, match=r"demos.jsonl:1: missing required field 'refusal'"):
        load_demonstrations(path)
    path.write_text("\n")
    with pytest.raises(E2UError, match="no demonstrations"):
        load_demonstrations(path)


def test_a_writer_that_loses_prompts_or_candidates_is_an_error():
    class Losing(Stub):
        def greedy(self, prompts):
            return [" don't know."]

    class Flat(Stub):
        def sampled(self, prompts):
            return ["'m not sure."] * len(prompts)

    with pytest.raises(E2UError, match=r"writer's greedy\(\) must return one str per prompt; got \['str'\] for 4"):
        craft_targets(Losing([[""]] * 4), RECORDS, load_demonstrations())
    with pytest.raises(E2UError, match=r"writer's sampled\(\) must return one list per prompt"):
        craft_targets(Flat([[" think so."]] * 4), RECORDS, load_demonstrations())


def test_the_model_writer_gives_greedy_then_seeded_samples_and_leaves_the_random_state_alone():
    model, tokenizer = make_tiny_llama()
    prompts = ["Question : who wrote the book ? Answer : I", "Question : what is the capital of France ? Answer : I"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    writer = ModelWriter(model, tokenizer, samples=3, seed=7, max_new_tokens=4)
    greedy, first = writer.greedy(prompts), writer.sampled(prompts)
    assert torch.equal(torch.get_rng_state(), state)
    assert [len(c) for c in first] == [3, 3] and all(isinstance(t, str) for t in greedy)
    assert ModelWriter(model, tokenizer, samples=3, seed=7, max_new_tokens=4).sampled(prompts) == first
    assert ModelWriter(model, tokenizer, samples=3, seed=8, max_new_tokens=4).sampled(prompts) != first
    assert ModelWriter(model, tokenizer, samples=0).sampled(prompts) == [[], []]
    assert writer.greedy(prompts[1:]) == greedy[1:]  # the left padding of a batch changes nothing
    with pytest.raises(E2UError, match="samples: expected a non-negative integer"):
        ModelWriter(model, tokenizer, samples=-1)


def test_a_row_stops_at_its_first_line_break():
    class Words:
        def decode(self, ids):
            return {1: "I", 2: " know", 3: ".\n", 4: "\n"}[ids[0]]

    ends = LineEnd(Words())(torch.tensor([[1, 2], [2, 3], [3, 4]]), None)
    assert ends.tolist() == [False, True, True]
