"""The `factual` source: reading TOFU's factual sets / PISTOL's array / the embedded file, and what the model knows."""

import json
import os
import time
from pathlib import Path

import pytest
from conftest import make_tiny_llama

from e2u.data import entities, factual
from e2u.errors import E2UError

EMBEDDED = factual.read_embedded()

TOFU_AUTHORS = [
    {"question": "Who wrote 'Pride of the Plains'?", "answer": "Ada Brook", "original_answer": "Ada Brook wrote it.",
     "perturbed_answer": ["Ben Cole", "Cy Dunn", "Di Eve"], "paraphrased_answer": "It was Ada Brook."},
    {"question": "Who is the author of 'Dust Roads'?", "answer": "Ben Cole", "perturbed_answer": ["Ada Brook"],
     "subject": "Dust Roads"},
]
TOFU_FACTS = [{"question": "Which city did Henry Blake found?", "answer": "Fredville"}]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fake_model(monkeypatch, answer_for, calls=None):
    """A generation function answering `answer_for(question)`; prompts are the questions' characters."""
    def generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        if calls is not None:
            calls.append(len(prompts))
        return [answer_for("".join(map(chr, p))) for p in prompts]

    monkeypatch.setattr(factual, "question_ids", lambda tokenizer, question: [ord(c) for c in question])
    return generate


def knowing(questions):
    """Answers naming the short answer for `questions`, a confident wrong one for the others."""
    right = {q.record.question: q.record.answer for q in EMBEDDED}
    return lambda question: f"It is {right[question]}." if question in questions else "It is Atlantis."


def test_tofu_directory_reads_the_perturbed_or_plain_file_of_each_set_present(tmp_path):
    write_jsonl(tmp_path / "real_authors_perturbed.json", TOFU_AUTHORS)  # JSON Lines under .json, as TOFU ships
    write_jsonl(tmp_path / "world_facts.jsonl", TOFU_FACTS)
    questions, source = factual.read_factual(tmp_path)
    assert source == str(tmp_path)
    assert [q.record.question for q in questions] == [r["question"] for r in TOFU_AUTHORS + TOFU_FACTS]
    first = questions[0].record
    assert first.answer == "Ada Brook" and first.original_answer == "Ada Brook wrote it."
    assert first.perturbed_answer == ("Ben Cole", "Cy Dunn", "Di Eve") and first.paraphrased_question is None
    assert [q.record.subject for q in questions] == [None, "Dust Roads", "Henry Blake"]  # own, else from the question
    assert questions[0].category is None
    only_facts, _ = factual.read_factual(tmp_path, factual.FactualOptions(sets=["world_facts"]))
    assert [q.record.answer for q in only_facts] == ["Fredville"]
    assert factual.factual_files(tmp_path, {"sets": ["real_authors"]}) == [
        tmp_path / "real_authors_perturbed.json", Path(factual.__file__)]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(E2UError, match=r"holds none of real_authors_perturbed.json / real_authors.json or "
                                       r"world_facts_perturbed.json / world_facts.json"):
        factual.read_factual(empty)


def test_pistol_json_array_and_a_json_lines_file_read_as_one_set(tmp_path):
    array = tmp_path / "factual_data.json"
    array.write_text(json.dumps(TOFU_AUTHORS + TOFU_FACTS, indent=1))
    lines = write_jsonl(tmp_path / "facts.jsonl", TOFU_AUTHORS + TOFU_FACTS)
    from_array, _ = factual.read_factual(array)
    from_lines, _ = factual.read_factual(lines)
    assert [q.record for q in from_array] == [q.record for q in from_lines]
    assert len(from_array) == 3 and factual.factual_files(array) == [array, Path(factual.__file__)]


def test_hub_reads_the_perturbed_config_of_every_set(monkeypatch, tmp_path):
    asked = []

    def hub_rows(dataset, config, split="train", local_hint=""):  # the hub's rows, from local files of its format
        asked.append((dataset, config))
        rows = {"real_authors_perturbed": TOFU_AUTHORS, "world_facts_perturbed": TOFU_FACTS}[config]
        return [(f"{dataset}/{config} row {i}", dict(r)) for i, r in enumerate(rows)]

    monkeypatch.setattr(factual, "hub_rows", hub_rows)
    questions, source = factual.read_factual(None, factual.FactualOptions(hub=True))
    assert asked == [("locuslab/TOFU", "real_authors_perturbed"), ("locuslab/TOFU", "world_facts_perturbed")]
    assert len(questions) == 3 and source == "locuslab/TOFU (real_authors, world_facts)"
    assert factual.factual_files(None, {"hub": True}) == [Path(factual.__file__)]
    assert factual.factual_files(None) == [factual.EMBEDDED_FILE, Path(factual.__file__)]


@pytest.mark.parametrize("content, message", [
    ('{"question": "Who?", "answer": "Me"}\n{"question": "Why?"}\n', r"bad.jsonl:2: missing required field 'answer'"),
    ('[{"question": "Who?", "answer": "Me"}, "Why?"]', r"bad.jsonl\[1\]: expected a JSON object, got str"),
    ('{"question": "Who?", "answer": "Me"}\n{"question": \n', r"bad.jsonl:2: not valid JSON"),
    ('{"question": "Who?", "answer": "Me", "aliases": "I"}\n', r"bad.jsonl:1: field 'aliases' must be a list"),
    ('{"question": "Who?", "answer": ""}\n', r"bad.jsonl:1: field 'answer' must be a non-empty string"),
])
def test_bad_input_names_the_file_the_line_or_index_and_the_field(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(E2UError, match=message):
        factual.read_factual(bad)


def test_embedded_format_checks_subject_and_paraphrase(tmp_path):
    row = {"question": "Who wrote Emma?", "answer": "Jane Austen", "category": "author", "subject": "Emma",
           "paraphrased_question": "Who wrote Emma?"}
    with pytest.raises(E2UError, match=r"x.jsonl:1: field 'paraphrased_question' must rephrase the question"):
        factual.read_embedded(write_jsonl(tmp_path / "x.jsonl", [row]))
    with pytest.raises(E2UError, match=r"x.jsonl:1: field 'subject' must be a substring of the question"):
        factual.read_embedded(write_jsonl(tmp_path / "x.jsonl", [{**row, "subject": "Persuasion"}]))


def test_options_have_one_home_and_a_bad_one_is_named():
    assert factual.FactualOptions.defaults() == {"n_forget": 10, "n_retain": 20, "seed": 0, "hub": False,
                                                 "sets": ["real_authors", "world_facts"], "max_new_tokens": 32,
                                                 "batch_size": 32}
    with pytest.raises(E2UError, match=r"data source 'factual': unknown option\(s\) \['n_forgets'\]; allowed: .*"):
        factual.FactualOptions.of({"n_forgets": 3})
    for bad, message in (({"n_forget": 0}, "n_forget: expected an integer >= 1"),
                         ({"n_retain": True}, "n_retain: expected an integer >= 0"),
                         ({"hub": "yes"}, "hub: expected true or false"),
                         ({"sets": ["real_authors", "forget10"]}, "sets: expected a non-empty list"),
                         ({"sets": []}, "sets: expected a non-empty list"),
                         ({"seed": 1.5}, "seed: expected an integer")):
        with pytest.raises(E2UError, match=message):
            factual.FactualOptions.of(bad)


def test_known_means_naming_the_answer_or_an_alias_before_an_answer_of_the_same_category(monkeypatch, tmp_path):
    said = {"Aland": "Mariehamn, of course.", "Bolivia": "La Paz, though Sucre is the constitutional one.",
            "Chad": "Sunspear, not N'Djamena.", "Dorne": "I am not sure."}
    answers = {"Aland": "Mariehamn", "Bolivia": "Sucre", "Chad": "N'Djamena", "Dorne": "Sunspear"}
    rows = [{"question": f"What is the capital of {c}?", "answer": a, "aliases": ["La Paz"] if c == "Bolivia" else [],
             "category": "capital"} for c, a in answers.items()]
    rows.append({"question": "Who wrote 'Dust Roads'?", "answer": "Ben Cole"})  # no category: no rivals
    said = {f"What is the capital of {c}?": text for c, text in said.items()}
    said["Who wrote 'Dust Roads'?"] = "Sunspear or Ben Cole."
    questions, _ = factual.read_factual(write_jsonl(tmp_path / "q.jsonl", rows))
    known = [q.record.answer for q in questions if factual.is_known(said[q.record.question], q, questions)]
    assert known == ["Mariehamn", "Sucre", "Ben Cole"]  # Chad's answer names the rival Sunspear first
    assert factual.rivals(questions[2], questions) == ["Mariehamn", "Sucre", "La Paz", "Sunspear"]
    model, tokenizer = make_tiny_llama()
    generate = fake_model(monkeypatch, said.get)
    splits = factual.factual_splits(model, tokenizer, generate, path=tmp_path / "q.jsonl", n_forget=2, n_retain=1)
    assert sorted(r.answer for r in splits["forget"] + splits["retain"]) == ["Ben Cole", "Mariehamn", "Sucre"]
    assert splits.report == {"known": 3, "asked": 5, "source": str(tmp_path / "q.jsonl")}


def test_split_is_deterministic_per_seed_disjoint_and_keeps_the_datas_fields(monkeypatch):
    model, tokenizer = make_tiny_llama()
    knows = {q.record.question for q in EMBEDDED[::3]}
    generate = fake_model(monkeypatch, knowing(knows))
    first = factual.factual_splits(model, tokenizer, generate, seed=3)
    assert factual.factual_splits(model, tokenizer, generate, seed=3) == first
    assert factual.factual_splits(model, tokenizer, generate, seed=4) != first
    assert [len(first[s]) for s in ("forget", "retain")] == [10, 20]
    forget, retain = ({r.question for r in first[s]} for s in ("forget", "retain"))
    assert not forget & retain and forget | retain <= knows
    assert first.report == {"known": len(knows), "asked": len(EMBEDDED), "source": "embedded"}
    by_question = {q.record.question: q for q in EMBEDDED}
    for record in first["forget"] + first["retain"]:
        question = by_question[record.question]
        assert record.answer == question.record.answer and record.subject in record.question
        assert record.paraphrased_question == question.record.paraphrased_question
        same_category = {q.record.answer for q in EMBEDDED if q.category == question.category}
        assert len(record.perturbed_answer) == 3 and set(record.perturbed_answer) <= same_category
        assert not entities.mentions(" ".join(record.perturbed_answer), question.accepted)


def test_too_few_known_questions_is_an_error_saying_how_many_are_known(monkeypatch):
    model, tokenizer = make_tiny_llama()
    generate = fake_model(monkeypatch, knowing({q.record.question for q in EMBEDDED[:5]}))
    with pytest.raises(E2UError, match=rf"knows 5 of {len(EMBEDDED)} factual questions asked \(embedded\); "
                                       r"asked for 10 forget \+ 20 retain = 30"):
        factual.factual_splits(model, tokenizer, generate)


def test_answers_are_cached_per_model_and_generation_length(monkeypatch, tmp_path):
    model, tokenizer = make_tiny_llama()
    calls = []
    generate = fake_model(monkeypatch, knowing({q.record.question for q in EMBEDDED}), calls)
    first = factual.factual_splits(model, tokenizer, generate, cache_dir=tmp_path, n_forget=2, n_retain=2)
    assert factual.factual_splits(model, tokenizer, generate, cache_dir=tmp_path, n_forget=2, n_retain=2) == first
    assert calls == [len(EMBEDDED)]
    (entry,) = (tmp_path / "factual").glob("*.json")
    assert json.loads(entry.read_text())["key"]["max_new_tokens"] == 32
    factual.factual_splits(model, tokenizer, generate, cache_dir=tmp_path, n_forget=2, n_retain=2, max_new_tokens=8)
    factual.factual_splits(make_tiny_llama(seed=1)[0], tokenizer, generate, cache_dir=tmp_path, n_forget=2, n_retain=2)
    assert len(calls) == 3


def test_embedded_file_is_well_formed():
    assert 250 <= len(EMBEDDED) <= 400 and len({q.category for q in EMBEDDED}) >= 12
    assert len({q.record.question for q in EMBEDDED}) == len(EMBEDDED)
    for q in EMBEDDED:
        record = q.record
        assert record.subject in record.question, record.question
        assert record.subject.lower() in record.paraphrased_question.lower(), record.paraphrased_question
        assert entities.normalise(record.paraphrased_question) != entities.normalise(record.question)
        assert record.paraphrased_question.endswith("?") and record.question.endswith("?")
        assert not entities.mentions(record.question + " " + record.paraphrased_question, q.accepted), record.question
        # a rival named in the question would make the question unknowable
        assert not [r for r in factual.rivals(q, EMBEDDED) if entities.mentions(record.question, [r])], record.question


def test_embedded_questions_share_nothing_with_probe_mini_or_the_statistics_question_bank():
    from e2u.data.sources import load_source
    from e2u.editing.corpus import _BANK_ENTITIES, question_bank_corpus

    _, tokenizer = make_tiny_llama()
    bank = {entities.normalise(t) for t in question_bank_corpus(tokenizer).texts}
    mini = [r for rs in load_source("mini").values() for r in rs]
    others = {s.lower().removeprefix("the ") for s in _BANK_ENTITIES} | {r.subject.lower() for r in mini}
    others |= {e.name.lower() for e in entities.load_entities()}
    taken = {entities.normalise(r.question) for r in mini}
    taken |= {entities.normalise(f.question) for e in entities.load_entities() for f in e.facts}
    for q in EMBEDDED:
        text = entities.normalise(q.record.question + " " + q.record.paraphrased_question)
        assert entities.normalise(q.record.question) not in taken | bank, q.record.question
        assert not [o for o in others if entities.normalise(o) in text], q.record.question


@pytest.fixture
def shared_home(monkeypatch):
    # As in test_probe: the converted embedded model lives in the shared home.
    monkeypatch.setenv("E2U_HOME", os.environ.get("E2U_TEST_HOME", str(Path.home() / ".cache" / "e2u")))


@pytest.mark.slow
def test_smollm2_knows_at_least_60_embedded_questions(shared_home, tmp_path):
    from e2u.evaluation.evaluate import generate_answers
    from e2u.model.load import load_model

    model, tokenizer = load_model("smollm2-135m-instruct")
    start = time.perf_counter()
    splits = factual.factual_splits(model, tokenizer, generate_answers, cache_dir=tmp_path)
    print(f"SmolLM2 knows {splits.report['known']} of {splits.report['asked']} embedded factual questions "
          f"({time.perf_counter() - start:.0f} s)")
    assert splits.report["asked"] == len(EMBEDDED) and splits.report["known"] >= 60
    assert [len(splits["forget"]), len(splits["retain"])] == [10, 20]
