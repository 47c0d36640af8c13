"""The `probe` setting: which entities a model knows, how they split, and the answer cache."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_tiny_llama

from e2u.data import entities, probe
from e2u.errors import E2UError
from e2u.evaluation.evaluate import generate_answers

ENTITIES = entities.load_entities()


def seeded_order(seed):
    """The order entities are asked in: the entity file shuffled by `random.Random(seed)`."""
    order = list(ENTITIES)
    random.Random(seed).shuffle(order)
    return order


def expected_chunks(knows, wanted, seed):
    """Questions per generation call, by the documented rule: chunks of max(8, 4 * still wanted) entities."""
    order, asked, known, sizes = seeded_order(seed), 0, 0, []
    while known < wanted and asked < len(order):
        chunk = order[asked : asked + max(8, 4 * (wanted - known))]
        asked += len(chunk)
        sizes.append(sum(len(e.facts) for e in chunk))
        known += sum(e.name in knows for e in chunk)
    return sizes


def fake_model_knowing(monkeypatch, entity_names, calls=None):
    """A generation function whose answers state the golden answer for `entity_names` only.

    Prompts are the questions' characters (the tiny tokenizer maps most words to one unknown id)."""
    facts = {f.question: f for e in ENTITIES for f in e.facts}

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        if calls is not None:
            calls.append(len(prompts))
        asked = [facts["".join(map(chr, p))] for p in prompts]
        return [f"I believe it is {f.answer}." if f.entity in entity_names else "I am not sure, sorry." for f in asked]

    monkeypatch.setattr(probe, "question_ids", lambda tokenizer, question: [ord(c) for c in question])
    return fake_generate


def test_tiny_random_model_knows_nothing_and_the_error_says_so():
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match=f"knows 0 of {len(ENTITIES)} probed entities.*8 forget \\+ 8 neighbour = 16"):
        probe.probe_splits(model, tokenizer, generate_answers, n_forget=8, n_neighbour=8, max_new_tokens=8)


def test_fact_is_known_when_the_answer_names_the_golden_answer_or_an_alias_before_a_rival():
    assert entities.mentions("The capital is Washington, D.C.", ["Washington, D.C."])
    assert entities.mentions("It was painted by Salvador DALI.", ["Salvador Dalí"])
    assert entities.mentions("It is in the U.S.", ["United States", "U.S."])
    assert not entities.mentions("It is in Romania.", ["Rome"])  # whole words only
    assert not entities.mentions("Let us think about it.", ["U.S."])
    kyoto = next(f for e in ENTITIES if e.name == "Kyoto" for f in e.facts if f.template == "language")
    rivals = entities.rivals(kyoto, ENTITIES)
    assert "English" in rivals and "Japanese" not in rivals
    assert entities.names_first("Mostly Japanese, though many speak English.", kyoto.accepted, rivals)
    assert not entities.names_first("Mostly English, and some Japanese.", kyoto.accepted, rivals)
    assert not entities.names_first("I do not know.", kyoto.accepted, rivals)


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
    fake = fake_model_knowing(monkeypatch, knows)
    first = probe.probe_splits(model, tokenizer, fake, n_forget=5, n_neighbour=6, seed=3)
    again = probe.probe_splits(model, tokenizer, fake, n_forget=5, n_neighbour=6, seed=3)
    other = probe.probe_splits(model, tokenizer, fake, n_forget=5, n_neighbour=6, seed=4)
    assert first == again
    assert first != other
    # the first 5 + 6 known entities in the seeded order, every fact of each (all are known), in file order
    chosen = [e for e in seeded_order(3) if e.name in knows][:11]
    for split, entities in (("forget", chosen[:5]), ("neighbour", chosen[5:])):
        facts = [f for e in entities for f in e.facts]
        assert [(r.subject, r.question) for r in first[split]] == [(f.entity, f.question) for f in facts]
        for record, fact in zip(first[split], facts):
            assert record.answer == f"I believe it is {fact.answer}."  # the model's own answer
            assert record.golden_answer == record.paraphrased_answer == fact.answer
            assert record.paraphrased_question == fact.paraphrased_question
            assert record.perturbed_answer == probe.perturbed_answers(fact, ENTITIES, seed=3)


def test_perturbed_answers_are_other_entities_answers_and_never_the_golden_one():
    for entity in ENTITIES:
        for fact in entity.facts:
            perturbed = probe.perturbed_answers(fact, ENTITIES)
            pool = entities.rivals(fact, ENTITIES, with_aliases=False)
            assert len(perturbed) == min(5, len(pool)) >= 1 and len(set(perturbed)) == len(perturbed), fact.question
            assert not any(entities.mentions(p, fact.accepted) for p in perturbed), fact.question
            same_form = {f.answer for e in ENTITIES for f in e.facts if f.form == fact.form}
            assert set(perturbed) <= same_form


def test_second_call_reuses_the_cached_answers_and_a_corrupt_cache_is_recomputed(monkeypatch, tmp_path):
    model, tokenizer = make_tiny_llama()
    calls = []
    fake = fake_model_knowing(monkeypatch, {e.name for e in ENTITIES[:20]}, calls)
    first = probe.probe_splits(model, tokenizer, fake, n_forget=4, n_neighbour=4)
    assert probe.probe_splits(model, tokenizer, fake, n_forget=4, n_neighbour=4) == first
    caches = sorted((Path(os.environ["E2U_HOME"]) / "probe").glob("*.json"))
    assert len(caches) == len(calls) and sorted(len(json.loads(c.read_text())["value"]) for c in caches) == sorted(calls)
    asked = len(calls)
    caches[0].write_text('{"answers": {"What is')
    assert probe.probe_splits(model, tokenizer, fake, n_forget=4, n_neighbour=4) == first
    assert len(calls) == asked + 1  # only the broken chunk is asked again
    json.loads(caches[0].read_text())  # rewritten whole


def test_only_as_many_entities_are_asked_as_the_split_needs(monkeypatch):
    """Entities are asked in seeded order, a chunk at a time, until enough are known."""
    model, tokenizer = make_tiny_llama()
    calls = []
    fake = fake_model_knowing(monkeypatch, {e.name for e in ENTITIES}, calls)
    probe.probe_splits(model, tokenizer, fake, n_forget=2, n_neighbour=2)
    # one chunk of max(8, 4 * 4) = 16 entities: their facts, and no more
    assert calls == [sum(len(e.facts) for e in seeded_order(0)[:16])] == expected_chunks({e.name for e in ENTITIES}, 4, 0)
    calls.clear()
    quarter = {e.name for e in ENTITIES[::4]}
    fake = fake_model_knowing(monkeypatch, quarter, calls)  # a quarter known: more chunks
    splits = probe.probe_splits(model, tokenizer, fake, n_forget=6, n_neighbour=6, seed=1)
    assert calls == expected_chunks(quarter, 12, 1) and len(calls) > 1
    assert len({r.subject for r in splits["forget"] + splits["neighbour"]}) == 12


def test_cache_entry_stores_its_key_and_one_made_for_another_key_is_not_trusted(monkeypatch):
    model, tokenizer = make_tiny_llama()
    calls = []
    fake = fake_model_knowing(monkeypatch, {e.name for e in ENTITIES}, calls)
    entities = ENTITIES[:3]
    answers = probe.probe_answers(model, tokenizer, fake, entities, max_new_tokens=4)
    assert answers == {f.question: f"I believe it is {f.answer}." for e in entities for f in e.facts}
    (entry,) = (Path(os.environ["E2U_HOME"]) / "probe").glob("*.json")
    stored = json.loads(entry.read_text())
    assert set(stored) == {"key", "value"} and stored["value"] == answers
    assert stored["key"]["max_new_tokens"] == 4 and entry.name.startswith(stored["key"]["model"])
    assert probe.probe_answers(model, tokenizer, fake, entities, max_new_tokens=4) == answers
    assert len(calls) == 1
    stored["key"]["max_new_tokens"] = 5  # an entry made for another setting, at this path
    stored["value"] = {q: "tampered" for q in answers}
    entry.write_text(json.dumps(stored))
    assert probe.probe_answers(model, tokenizer, fake, entities, max_new_tokens=4) == answers
    assert len(calls) == 2


def test_a_generation_function_giving_the_wrong_number_of_answers_is_an_error(monkeypatch):
    model, tokenizer = make_tiny_llama()
    n = len(ENTITIES[0].facts)
    with pytest.raises(E2UError, match=rf"generate: expected {n} answers \(strings\), got 1"):
        probe.probe_answers(model, tokenizer, lambda *args: ["one"], ENTITIES[:1], max_new_tokens=4)


def test_probe_options_are_the_one_home_of_the_defaults():
    from e2u.data.sources import SOURCE_OPTIONS, source_options

    defaults = probe.ProbeOptions.defaults()
    assert dict(SOURCE_OPTIONS["probe"]) == defaults == {
        "n_forget": 8, "n_neighbour": 8, "seed": 0, "min_known": 0.5, "max_new_tokens": 32, "batch_size": 32,
        "entities_path": None}
    assert source_options("probe", {"n_forget": 3}) == {**defaults, "n_forget": 3}
    with pytest.raises(E2UError, match=r"data source 'probe': unknown option\(s\) \['n_forgets'\]; allowed: .*n_forget"):
        source_options("probe", {"n_forgets": 3})
    with pytest.raises(E2UError, match=r"data source 'probe': min_known: expected a fraction in \(0, 1\], got 0"):
        source_options("probe", {"min_known": 0})
    with pytest.raises(E2UError, match=r"n_neighbour: expected an integer >= 0, got -1"):
        source_options("probe", {"n_neighbour": -1})


def test_probe_splits_uses_the_option_defaults_and_checks_its_options(monkeypatch):
    model, tokenizer = make_tiny_llama()
    fake = fake_model_knowing(monkeypatch, set())
    with pytest.raises(E2UError, match=r"8 forget \+ 8 neighbour = 16"):  # ProbeOptions' defaults
        probe.probe_splits(model, tokenizer, fake)
    with pytest.raises(E2UError, match=r"unknown option\(s\) \['n_authors'\]"):
        probe.probe_splits(model, tokenizer, fake, n_authors=3)
    for bad, message in (({"n_forget": 0}, "n_forget: expected an integer >= 1"),
                         ({"n_forget": True}, "n_forget: expected an integer >= 1"),
                         ({"batch_size": 0}, "batch_size: expected an integer >= 1"),
                         ({"seed": "0"}, "seed: expected an integer")):
        with pytest.raises(E2UError, match=message):
            probe.probe_splits(model, tokenizer, fake, **bad)


def test_the_data_layer_does_not_import_the_evaluation():
    code = "import sys, e2u.data.probe, e2u.data.sources; print('e2u.evaluation.evaluate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "False"


def test_cache_of_another_model_is_not_reused(monkeypatch):
    calls = []
    fake = fake_model_knowing(monkeypatch, {e.name for e in ENTITIES[:20]}, calls)
    for seed in (0, 1):
        model, tokenizer = make_tiny_llama(seed=seed)
        probe.probe_splits(model, tokenizer, fake, n_forget=4, n_neighbour=4)
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
        entities.load_entities(path)


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
            text = entities.normalise(fact.question + " " + fact.paraphrased_question)
            assert not [o for o in others if entities.normalise(o) in text], fact.question


def test_prompts_through_a_chat_template_are_cached_apart_from_plain_prompts():
    model, tokenizer = make_tiny_llama()
    entities = ENTITIES[:2]
    plain = probe.probe_answers(model, tokenizer, generate_answers, entities, max_new_tokens=4)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %} Answer :"
    chat = probe.probe_answers(model, tokenizer, generate_answers, entities, max_new_tokens=4)
    assert set(plain) == set(chat) == {f.question for e in entities for f in e.facts}
    assert len(list((Path(os.environ["E2U_HOME"]) / "probe").glob("*.json"))) == 2


@pytest.fixture
def shared_home(monkeypatch):
    # As in test_embedded_model: the converted model (and the probe cache) live in the shared home.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))


@pytest.mark.slow
def test_smollm2_knows_enough_probe_entities_for_a_split(shared_home, tmp_path):
    from e2u.model.load import load_model

    # A third of the entity file keeps this check at about a minute on a fresh CPU machine;
    # the full file (89 entities) is probed by `e2u prepare` for the book.
    sample = tmp_path / "entities.jsonl"
    sample.write_text("".join(entities.ENTITY_FILE.read_text().splitlines(keepends=True)[:30]))
    sampled = entities.load_entities(sample)
    model, tokenizer = load_model("smollm2-135m-instruct")
    start = time.perf_counter()
    answers = probe.probe_answers(model, tokenizer, generate_answers, sampled)  # cached in the shared home after the first run
    known = probe.known_facts(sampled, answers)
    print(f"SmolLM2 knows {len(known)} of {len(sampled)} entities, {sum(map(len, known.values()))} of "
          f"{len(answers)} facts ({time.perf_counter() - start:.0f} s)")
    assert len(known) >= 15
    splits = probe.probe_splits(model, tokenizer, generate_answers, n_forget=5, n_neighbour=5, entities_path=str(sample))
    assert [len({r.subject for r in splits[s]}) for s in ("forget", "neighbour")] == [5, 5]
    known_questions = {f.question for facts in known.values() for f in facts}
    assert all(r.question in known_questions and r.answer == answers[r.question]
               for r in splits["forget"] + splits["neighbour"])
