"""The `probe` setting: which entities a model knows, how they split, and the answer cache."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import make_tiny_llama
from e2u.data import probe
from e2u.errors import E2UError

ENTITIES = probe.load_entities()


def fake_model_knowing(monkeypatch, entity_names, calls=None):
    """Replace generation by answers that state the golden answer for `entity_names` only.

    Prompts are the questions' characters (the tiny tokenizer maps most words to one unknown id)."""
    facts = {f.question: f for e in ENTITIES for f in e.facts}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        if calls is not None:
            calls.append(len(prompts))
        asked = [facts["".join(map(chr, p))] for p in prompts]
        return [f"I believe it is {f.answer}." if f.entity in entity_names else "I am not sure, sorry." for f in asked]

    monkeypatch.setattr(probe, "question_ids", lambda tokenizer, question: [ord(c) for c in question])
    monkeypatch.setattr(probe, "generate_answers", fake_generate)


def test_tiny_random_model_knows_nothing_and_the_error_says_so():
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match=f"knows 0 of {len(ENTITIES)} probed entities.*8 forget \\+ 8 neighbour = 16"):
        probe.probe_splits(model, tokenizer, n_forget=8, n_neighbour=8, max_new_tokens=8)


def test_fact_is_known_when_the_answer_names_the_golden_answer_or_an_alias_before_a_rival():
    assert probe.mentions("The capital is Washington, D.C.", ["Washington, D.C."])
    assert probe.mentions("It was painted by Salvador DALI.", ["Salvador Dalí"])
    assert probe.mentions("It is in the U.S.", ["United States", "U.S."])
    assert not probe.mentions("It is in Romania.", ["Rome"])  # whole words only
    assert not probe.mentions("Let us think about it.", ["U.S."])
    kyoto = next(f for e in ENTITIES if e.name == "Kyoto" for f in e.facts if f.template == "language")
    rivals = probe.rivals(kyoto, ENTITIES)
    assert "English" in rivals and "Japanese" not in rivals
    assert probe.names_first("Mostly Japanese, though many speak English.", kyoto.accepted, rivals)
    assert not probe.names_first("Mostly English, and some Japanese.", kyoto.accepted, rivals)
    assert not probe.names_first("I do not know.", kyoto.accepted, rivals)


def test_entity_is_known_only_with_at_least_half_of_its_facts():
    entity = next(e for e in ENTITIES if len(e.facts) == 4)
    golden = [f.answer for f in entity.facts]
    for n_right, expected in ((1, False), (2, True), (4, True)):
        answers = {f.question: (golden[i] if i < n_right else "no idea") for i, f in enumerate(entity.facts)}
        known = probe.known_facts([entity], answers)
        assert (entity.name in known) is expected
        if expected:
            assert len(known[entity.name]) == n_right  # only the known facts are kept


def test_split_is_deterministic_for_a_seed_with_disjoint_entities_and_known_facts_only(monkeypatch):
    model, tokenizer = make_tiny_llama()
    knows = {e.name for e in ENTITIES[::3]}
    fake_model_knowing(monkeypatch, knows)
    first = probe.probe_splits(model, tokenizer, n_forget=5, n_neighbour=6, seed=3)
    again = probe.probe_splits(model, tokenizer, n_forget=5, n_neighbour=6, seed=3)
    other = probe.probe_splits(model, tokenizer, n_forget=5, n_neighbour=6, seed=4)
    assert first == again
    assert first != other
    forget = {r.subject for r in first["forget"]}
    neighbour = {r.subject for r in first["neighbour"]}
    assert len(forget) == 5 and len(neighbour) == 6 and not forget & neighbour
    assert forget | neighbour <= knows
    for record in first["forget"] + first["neighbour"]:
        assert record.subject in record.question
        assert record.answer == f"I believe it is {record.golden_answer}."  # the model's own answer
        assert record.paraphrased_answer == record.golden_answer and record.paraphrased_question


def test_perturbed_answers_are_other_entities_answers_and_never_the_golden_one():
    for entity in ENTITIES:
        for fact in entity.facts:
            perturbed = probe.perturbed_answers(fact, ENTITIES)
            assert 1 <= len(perturbed) <= 5 and len(set(perturbed)) == len(perturbed), fact.question
            assert not any(probe.mentions(p, fact.accepted) for p in perturbed), fact.question
            same_form = {f.answer for e in ENTITIES for f in e.facts if f.form == fact.form}
            assert set(perturbed) <= same_form


def test_second_call_reuses_the_cached_answers_and_a_corrupt_cache_is_recomputed(monkeypatch, tmp_path):
    model, tokenizer = make_tiny_llama()
    calls = []
    fake_model_knowing(monkeypatch, {e.name for e in ENTITIES[:20]}, calls)
    first = probe.probe_splits(model, tokenizer, n_forget=4, n_neighbour=4)
    assert probe.probe_splits(model, tokenizer, n_forget=4, n_neighbour=4) == first
    caches = sorted((Path(os.environ["E2U_HOME"]) / "probe").glob("*.json"))
    assert len(caches) == len(calls) and sorted(len(json.loads(c.read_text())["answers"]) for c in caches) == sorted(calls)
    asked = len(calls)
    caches[0].write_text('{"answers": {"What is')
    assert probe.probe_splits(model, tokenizer, n_forget=4, n_neighbour=4) == first
    assert len(calls) == asked + 1  # only the broken chunk is asked again
    json.loads(caches[0].read_text())  # rewritten whole


def test_only_as_many_entities_are_asked_as_the_split_needs(monkeypatch):
    """Entities are asked in seeded order, a chunk at a time, until enough are known."""
    model, tokenizer = make_tiny_llama()
    calls = []
    fake_model_knowing(monkeypatch, {e.name for e in ENTITIES}, calls)
    probe.probe_splits(model, tokenizer, n_forget=2, n_neighbour=2)
    assert len(calls) == 1 and calls[0] < sum(len(e.facts) for e in ENTITIES) / 4
    calls.clear()
    fake_model_knowing(monkeypatch, {e.name for e in ENTITIES[::4]}, calls)  # a quarter known: more chunks
    splits = probe.probe_splits(model, tokenizer, n_forget=6, n_neighbour=6, seed=1)
    assert len(calls) > 1 and len({r.subject for r in splits["forget"] + splits["neighbour"]}) == 12


def test_cache_of_another_model_is_not_reused(monkeypatch):
    calls = []
    fake_model_knowing(monkeypatch, {e.name for e in ENTITIES[:20]}, calls)
    for seed in (0, 1):
        model, tokenizer = make_tiny_llama(seed=seed)
        probe.probe_splits(model, tokenizer, n_forget=4, n_neighbour=4)
    assert len(calls) == 2


def test_entity_file_is_well_formed():
    assert 70 <= len(ENTITIES) <= 120
    assert len({e.type for e in ENTITIES}) >= 8
    for entity in ENTITIES:
        assert 3 <= len(entity.facts) <= 4
        assert len({f.template for f in entity.facts}) == len(entity.facts)


def test_malformed_entity_file_is_rejected_with_the_line_named(tmp_path):
    path = tmp_path / "entities.jsonl"
    path.write_text('{"entity": "Oslo", "type": "city", "facts": [{"template": "country", '
                    '"question": "Which country is it in?", "paraphrased_question": "?", "answer": "Norway"}]}\n')
    with pytest.raises(E2UError, match=r"entities.jsonl:1 fact 0: the question .* does not contain the entity 'Oslo'"):
        probe.load_entities(path)


def test_probe_entities_share_nothing_with_the_mini_set_or_the_statistics_question_bank():
    from e2u.data.sources import load_source
    from e2u.editing.corpus import _BANK_ENTITIES, question_bank_corpus

    _, tokenizer = make_tiny_llama()
    bank = " ".join(question_bank_corpus(tokenizer).texts).lower()
    mini = load_source("mini")
    mini_text = " ".join(r.question + " " + (r.paraphrased_question or "") for rs in mini.values() for r in rs).lower()
    others = {s.lower().removeprefix("the ") for s in _BANK_ENTITIES}
    others |= {r.subject.lower() for rs in mini.values() for r in rs}
    for entity in ENTITIES:
        assert entity.name.lower() not in bank and entity.name.lower() not in mini_text, entity.name
        for fact in entity.facts:
            text = probe.normalise(fact.question + " " + fact.paraphrased_question)
            assert not [o for o in others if probe.normalise(o) in text], fact.question


def test_prompts_through_a_chat_template_are_cached_apart_from_plain_prompts():
    model, tokenizer = make_tiny_llama()
    entities = ENTITIES[:2]
    plain = probe.probe_answers(model, tokenizer, entities, max_new_tokens=4)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %} Answer :"
    chat = probe.probe_answers(model, tokenizer, entities, max_new_tokens=4)
    assert set(plain) == set(chat) == {f.question for e in entities for f in e.facts}
    assert len(list((Path(os.environ["E2U_HOME"]) / "probe").glob("*.json"))) == 2


@pytest.fixture
def shared_home(monkeypatch):
    # As in test_embedded_model: the converted model (and the probe cache) live in the shared home.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))


@pytest.mark.slow
def test_smollm2_knows_enough_probe_entities_for_a_split(shared_home, tmp_path):
    from e2u.models import load_model

    # A third of the entity file keeps this check at about a minute on a fresh CPU machine;
    # the full file (89 entities) is probed by `e2u prepare` for the book.
    sample = tmp_path / "entities.jsonl"
    sample.write_text("".join(probe.ENTITY_FILE.read_text().splitlines(keepends=True)[:30]))
    entities = probe.load_entities(sample)
    model, tokenizer = load_model("smollm2-135m-instruct")
    start = time.perf_counter()
    answers = probe.probe_answers(model, tokenizer, entities)  # cached in the shared home after the first run
    known = probe.known_facts(entities, answers)
    print(f"SmolLM2 knows {len(known)} of {len(entities)} entities, {sum(map(len, known.values()))} of "
          f"{len(answers)} facts ({time.perf_counter() - start:.0f} s)")
    assert len(known) >= 15
    splits = probe.probe_splits(model, tokenizer, n_forget=5, n_neighbour=5, entities_path=sample)
    assert [len({r.subject for r in splits[s]}) for s in ("forget", "neighbour")] == [5, 5]
    known_questions = {f.question for facts in known.values() for f in facts}
    assert all(r.question in known_questions and r.answer == answers[r.question]
               for r in splits["forget"] + splits["neighbour"])
