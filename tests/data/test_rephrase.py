"""The rephrase attack's questions: identical paraphrases dropped, the model's own rephrasings filtered and cached."""

import json

import pytest
from conftest import make_tiny_llama

from e2u.data import entities, factual, rephrase
from e2u.data.rephrase import check_paraphrase
from e2u.data.schema import QARecord
from e2u.evaluation.evaluate import generate_answers
from e2u.model.prompts import question_ids


def test_a_paraphrase_equal_to_its_question_up_to_case_space_and_punctuation_is_dropped_and_counted():
    records = [
        QARecord("What is the capital of Chad?", "N'Djamena", paraphrased_question="what is the  capital of chad"),
        QARecord("Who wrote Emma?", "Jane Austen", paraphrased_question="Which novelist wrote Emma?"),
        QARecord("Who wrote Ulysses?", "James Joyce", paraphrased_question="Who wrote -- Ulysses ??"),
        QARecord("Who painted Nighthawks?", "Edward Hopper"),
    ]
    out, dropped = rephrase.drop_identical_paraphrases(records)
    assert dropped == 2
    assert [r.paraphrased_question for r in out] == [None, "Which novelist wrote Emma?", None, None]


@pytest.mark.parametrize("generated, expected", [
    ("Which novelist is the author of Emma?", ("Which novelist is the author of Emma?", None)),
    ("Sure! Here is the rewritten question: Which novelist is the author of Emma? I hope it helps.",
     ("Which novelist is the author of Emma?", None)),
    ('The rewritten question is "Which novelist penned emma?"', ("Which novelist penned emma?", None)),
    ("Jane Austen wrote it.\nWhich writer gave us Emma?\nWho else?", ("Which writer gave us Emma?", None)),
    ("Emma was written by Jane Austen.", (None, "no_question")),
    ("... ?", (None, "no_question")),
    ("Who wrote Emma ?", (None, "identical")),
    ("Which novelist wrote Middlemarch?", (None, "subject")),
    ("Which of the many famous English novelists of the early nineteenth century wrote the novel Emma?",
     (None, "too_long")),
])
def test_a_model_paraphrase_is_one_new_question_keeping_the_subject_and_not_too_long(generated, expected):
    assert check_paraphrase("Who wrote Emma?", "Emma", generated) == expected


def test_a_subject_with_a_full_stop_survives_the_preamble_cut():
    question = "In which city is St. Peter's Basilica?"
    assert check_paraphrase(question, "St. Peter's Basilica", "Okay. St. Peter's Basilica stands in which city?") == (
        "St. Peter's Basilica stands in which city?", None)


def test_without_a_subject_the_capitalised_words_of_the_question_must_stay():
    question = "Which planet is closest to the Sun?"
    assert rephrase.required_words(question, None) == ["Sun"]
    assert check_paraphrase(question, None, "Which planet orbits nearest to the sun?") == (
        "Which planet orbits nearest to the sun?", None)
    assert check_paraphrase(question, None, "Which planet orbits nearest to our star?") == (None, "subject")
    assert check_paraphrase(question, None, "Which planet is nearest to Sunday?") == (None, "subject")  # whole words
    biggest = "Which organ of the body is the biggest?"  # no capitalised word to keep
    assert check_paraphrase("What is the largest organ of the human body?", None, biggest) == (biggest, None)


def test_the_request_is_one_chat_message_with_the_demonstrations_and_ends_with_the_question():
    _, tokenizer = make_tiny_llama()
    request = rephrase.rephrase_request("Who wrote Emma?")
    assert request.startswith(rephrase.INSTRUCTION) and request.endswith("Question: Who wrote Emma?\nRewritten:")
    assert 4 <= len(rephrase.DEMONSTRATIONS) <= 6
    assert all(q in request and p in request for q, p in rephrase.DEMONSTRATIONS)
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['content'] }}{% endfor %} Answer :"
    assert rephrase.rephrase_ids(tokenizer, "Who wrote Emma?") == question_ids(tokenizer, request)


def test_demonstrations_are_no_question_of_the_data_sets():
    data = {entities.normalise(q.record.question) for q in factual.read_embedded()}
    data |= {entities.normalise(f.question) for e in entities.load_entities() for f in e.facts}
    for question, paraphrase in rephrase.DEMONSTRATIONS:
        assert entities.normalise(question) not in data and check_paraphrase(question, None, paraphrase)[1] is None


def records():
    return [
        QARecord("Who wrote Emma?", "Jane Austen", subject="Emma"),
        QARecord("Who painted Nighthawks?", "Edward Hopper", subject="Nighthawks"),
        QARecord("What is the capital of Chad?", "N'Djamena", subject="Chad",
                 paraphrased_question="Which city is the capital of Chad?"),
        QARecord("Who composed Bolero?", "Maurice Ravel", subject="Bolero"),
    ]


def test_records_without_a_paraphrase_get_the_models_accepted_one_and_the_report_counts(monkeypatch, tmp_path):
    model, tokenizer = make_tiny_llama()
    monkeypatch.setattr(rephrase, "question_ids", lambda tokenizer, text: [ord(c) for c in text])
    calls = []
    writes = {"Who wrote Emma?": "Sure: Which novelist wrote Emma?", "Who painted Nighthawks?": "Edward Hopper.",
              "Who composed Bolero?": "Who composed Bolero?"}

    def generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        calls.append((len(prompts), max_new_tokens, batch_size))
        requests = ["".join(map(chr, p)) for p in prompts]
        return [next(w for q, w in writes.items() if r.endswith(f"Question: {q}\nRewritten:")) for r in requests]

    out, report = rephrase.model_paraphrases(model, tokenizer, generate, records(), cache_dir=tmp_path)
    assert [r.paraphrased_question for r in out] == [
        "Which novelist wrote Emma?", None, "Which city is the capital of Chad?", None]
    assert report == {"source": "model", "written": 1, "rejected": 2, "reasons": {"identical": 1, "no_question": 1}}
    assert calls == [(3, 48, 16)]  # the record with a paraphrase is not asked
    again, _ = rephrase.model_paraphrases(model, tokenizer, generate, records(), cache_dir=tmp_path)
    assert again == out and len(calls) == 1  # cached
    (entry,) = (tmp_path / "rephrase").glob("*.json")
    assert json.loads(entry.read_text())["value"] == writes
    rephrase.model_paraphrases(model, tokenizer, generate, records(), cache_dir=tmp_path, max_new_tokens=20)
    assert len(calls) == 2  # another generation length is another entry


def test_nothing_to_rephrase_asks_nothing():
    model, tokenizer = make_tiny_llama()
    done = [r for r in records() if r.paraphrased_question]
    out, report = rephrase.model_paraphrases(model, tokenizer, lambda *a: pytest.fail("asked"), done)
    assert out == done and report == {"source": "model", "written": 0, "rejected": 0, "reasons": {}}


def test_a_tiny_random_model_writes_through_the_real_generation_and_every_record_is_accounted_for(tmp_path):
    model, tokenizer = make_tiny_llama()
    out, report = rephrase.model_paraphrases(model, tokenizer, generate_answers, records(), max_new_tokens=12,
                                             cache_dir=tmp_path)
    assert report["written"] + report["rejected"] == 3 == report["written"] + sum(report["reasons"].values())
    assert set(report["reasons"]) <= {"no_question", "subject", "identical", "too_long"}
    assert out[2] == records()[2]
    for before, after in zip(records(), out):
        if before.paraphrased_question is None and after.paraphrased_question is not None:
            assert check_paraphrase(before.question, before.subject, after.paraphrased_question)[1] is None
