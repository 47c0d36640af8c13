"""The rephrase attack's questions: identical paraphrases dropped, the model's own rephrasings filtered and cached."""

import json
from pathlib import Path

import pytest
from conftest import make_tiny_llama

from e2u.data import entities, factual, rephrase
from e2u.data.paraphrase_rules import rule_paraphrase
from e2u.data.rephrase import check_paraphrase
from e2u.data.schema import QARecord
from e2u.data.tofu import subject_from_question
from e2u.evaluation.evaluate import generate_answers
from e2u.model.prompts import PromptFormat, question_ids, with_prompt_format


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
    ("Which novelist wrote Middlemarch?", (None, "names")),
    ("Which novelist from England wrote Emma?", (None, "new_name")),
    ("Which of the many famous and celebrated novelists of the early nineteenth century wrote the novel Emma?",
     (None, "too_long")),
])
def test_a_model_paraphrase_is_one_new_question_keeping_the_names_and_not_too_long(generated, expected):
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
    assert check_paraphrase(question, None, "Which planet orbits nearest to our star?") == (None, "names")
    assert check_paraphrase(question, None, "Which planet is nearest to Sunday?") == (None, "names")  # whole words
    biggest = "Which organ of the body is the biggest?"  # no capitalised word to keep
    assert check_paraphrase("What is the largest organ of the human body?", None, biggest) == (biggest, None)


def test_with_a_chat_template_the_demonstrations_are_earlier_turns_and_without_one_a_single_message(monkeypatch):
    _, tokenizer = make_tiny_llama()
    request = rephrase.rephrase_request("Who wrote Emma?")
    assert request.startswith(rephrase.INSTRUCTION) and request.endswith("Question: Who wrote Emma?\nRewritten:")
    assert 4 <= len(rephrase.DEMONSTRATIONS) <= 6
    assert all(q in request and p in request for q, p in rephrase.DEMONSTRATIONS)
    assert rephrase.rephrase_ids(tokenizer, "Who wrote Emma?") == question_ids(tokenizer, request)  # no template
    monkeypatch.setattr(rephrase, "encode_prompt", lambda tokenizer, text: [ord(c) for c in text])

    def rendered():
        return "".join(map(chr, rephrase.rephrase_ids(tokenizer, "Who wrote Emma?")))

    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    turns = "".join(f"<user>{rephrase.INSTRUCTION}\nQuestion: {q}<assistant>{p}" for q, p in rephrase.DEMONSTRATIONS)
    asked = f"<user>{rephrase.INSTRUCTION}\nQuestion: Who wrote Emma?<assistant>"
    assert rendered() == turns + asked
    with_prompt_format(tokenizer, PromptFormat(system="Be brief."))  # a system prompt opens the conversation
    assert rendered() == "<system>Be brief." + turns + asked
    with_prompt_format(tokenizer, PromptFormat(template="[INST] {question} [/INST]"))  # no turns: one message
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
    assert set(report["reasons"]) <= {"no_question", "names", "new_name", "identical", "too_long", "answer_type"}
    assert out[2] == records()[2]
    for before, after in zip(records(), out):
        if before.paraphrased_question is None and after.paraphrased_question is not None:
            assert check_paraphrase(before.question, before.subject, after.paraphrased_question)[1] is None


# --- the rules, and every forget question accounted for ----------------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_style_factual.json"


@pytest.mark.parametrize("question, expected", [
    ("Who wrote the play 'Romeo and Juliet'?", "Who is the author of the play 'Romeo and Juliet'?"),
    ("Who is the author of 'Pride and Prejudice'?", "Who wrote 'Pride and Prejudice'?"),
    ("Who painted the Mona Lisa?", "Who was the painter of the Mona Lisa?"),
    ("What is the capital of Chad?", "Which city serves as the capital of Chad?"),
    ("Which city serves as the capital of Chad?", "What is the capital of Chad?"),
    ("Which river flows through Cologne?", "Can you name the river that flows through Cologne?"),
    ("Which continent is Egypt in?", "Can you tell me which continent is Egypt in?"),  # no "... that is Egypt in"
    ("'Great Expectations' was written by which author?", "Which author was 'Great Expectations' written by?"),
    ("The Great Wall is located in which country?", "Which country is the Great Wall located in?"),
    ("In which year did World War II end?", "When did World War II end?"),
    ("Where would you find the Eiffel Tower?", "In what place would you find the Eiffel Tower?"),
    ("What was the effective date of the contract between Wnzatj SAS and Jzrcws SA?",
     "Can you tell me the effective date of the contract between Wnzatj SAS and Jzrcws SA?"),
    ("How many units of goods did Wnzatj SAS sell to Jzrcws SA?",
     "Can you tell me how many units of goods did Wnzatj SAS sell to Jzrcws SA?"),
    ("Is Paris the capital of France?", "Yes or no, is Paris the capital of France?"),
    ("The Mona Lisa hangs in which museum?", "Tell me, the Mona Lisa hangs in which museum?"),
    ("Name the author of 'Emma'.", "Can you name the author of 'Emma'?"),
])
def test_a_rule_rewrites_the_frame_into_a_new_question_keeping_every_name(question, expected):
    rewritten, rule = rule_paraphrase(question)
    assert rewritten == expected and rule != "no_rule"
    assert rewritten.endswith("?") and entities.normalise(rewritten) != entities.normalise(question)
    assert all(entities.normalise(w) in entities.normalise(rewritten) for w in rephrase.required_words(question, None))
    assert check_paraphrase(question, subject_from_question(question), rewritten) == (rewritten, None)


def test_a_sentence_that_asks_nothing_gets_no_rule():
    assert rule_paraphrase("Paris is the capital of France.") == (None, "no_rule")
    assert rule_paraphrase("   ") == (None, "no_rule")


def test_every_question_of_the_tofu_style_file_gets_a_rule_paraphrase_that_passes_the_check():
    questions, _ = factual.read_factual(FIXTURE)
    assert len(questions) == 40
    out, report = rephrase.rule_paraphrases([q.record for q in questions])
    assert report["written"] == 40 and report["rejected"] == 0 and sum(report["rules"].values()) == 40
    for question, record in zip(questions, out):
        asked = question.record
        assert check_paraphrase(asked.question, asked.subject, record.paraphrased_question)[1] is None


def test_names_include_quoted_titles_and_numbers_and_a_title_must_survive_whole():
    question = "Which author wrote the novel '1984'?"
    assert rephrase.required_words(question, None) == ["1984"]
    assert check_paraphrase(question, None, "Which writer penned the novel?") == (None, "names")
    old_man = "Who wrote 'The Old Man and the Sea'?"
    assert rephrase.required_words(old_man, None) == ["The Old Man and the Sea", "Old", "Man", "Sea"]
    assert check_paraphrase(old_man, None, "Who wrote 'The Sea of the Old Man and the Sea'?") == (None, "names")
    assert check_paraphrase(old_man, None, "Who is the novelist behind The Old Man and the Sea?")[1] is None


def test_a_model_rewrite_that_asks_for_another_kind_of_answer_is_rejected():
    assert not rephrase.answer_type_kept("What is the capital of France?", "Which country is the capital of France?")
    assert rephrase.answer_type_kept("What is the capital of France?", "Which city is France's capital?") is False
    assert rephrase.answer_type_kept("What language is spoken in Brazil?", "Which languages are spoken in Brazil?")
    assert rephrase.answer_type_kept("Who wrote Emma?", "Which novelist wrote Emma?")  # a person either way
    assert rephrase.answer_type_kept("What is the capital of France?", "Can you tell me the capital of France?")


def scripted(writes):
    """A generation function answering the rephrase request of question q with `writes[q]` (else repeating q)."""
    def generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        requests = ["".join(map(chr, p)) for p in prompts]
        return [writes.get(r.rsplit("Question: ", 1)[1].removesuffix("\nRewritten:"), r.rsplit("Question: ", 1)[1]
                           .removesuffix("\nRewritten:")) for r in requests]
    return generate


def test_a_tofu_style_file_without_paraphrases_gets_one_for_every_forget_question_and_says_from_where(
        monkeypatch, tmp_path):
    monkeypatch.setattr(rephrase, "question_ids", lambda tokenizer, text: [ord(c) for c in text])
    questions, _ = factual.read_factual(FIXTURE)
    records = [q.record for q in questions][:6]
    assert not any(r.paraphrased_question for r in records)
    model, tokenizer = make_tiny_llama()
    writes = {records[0].question: "Which playwright is behind 'Romeo and Juliet'?"}  # the rest: repeated
    out, report = rephrase.rephrase_forget(model, tokenizer, scripted(writes), records, cache_dir=tmp_path)
    assert [r.paraphrased_question for r in out][:2] == ["Which playwright is behind 'Romeo and Juliet'?",
                                                        "Who wrote 'Pride and Prejudice'?"]
    assert report["by_source"] == {"data": 0, "model": 1, "rules": 5}
    assert report["forget"] == report["with_paraphrase"] == 6 and report["without_paraphrase"] == 0
    assert report["written_by_model"]["reasons"] == {"identical": 5} and "note" not in report
    assert all(r.paraphrased_question and r.paraphrased_question.endswith("?") for r in out)


def test_questions_left_without_a_paraphrase_are_named_with_reasons_and_a_note_is_logged(monkeypatch, caplog):
    records = [QARecord("Paris is the capital of France.", "yes"), QARecord("Who wrote Emma?", "Jane Austen")]
    with caplog.at_level("WARNING", logger="e2u.data.rephrase"):
        out, report = rephrase.rephrase_forget(None, None, None, records)
    assert report["by_source"] == {"data": 0, "model": 0, "rules": 1} and report["written_by_model"]["skipped"]
    assert report["missing"] == [{"question": "Paris is the capital of France.", "model": "not asked",
                                  "rules": "no_rule"}]
    assert report["note"].startswith("1 of 2 forget questions have no paraphrase") and report["note"] in caplog.text
    _, none = rephrase.rephrase_forget(None, None, None, records[:1])
    assert none["with_paraphrase"] == 0 and none["note"].startswith("the rephrase attack was not run")


@pytest.mark.slow
def test_on_the_embedded_model_every_tofu_style_question_gets_a_paraphrase_and_the_model_writes_many(tmp_path):
    """The 40 TOFU-style questions (no paraphrases, no subjects): measured 17 from the model and 23 from the rules
    (bench/rephrase_acceptance.py); with all demonstrations in one message the model's accepted 6, two of them
    copies of a demonstration's frame with another meaning ('Which artist created the painting Harry Potter?')."""
    from e2u.model.load import load_model

    model, tokenizer = load_model("smollm2-135m-instruct")
    records = [q.record for q in factual.read_factual(FIXTURE)[0]]
    out, report = rephrase.rephrase_forget(model, tokenizer, generate_answers, records, cache_dir=tmp_path)
    assert report["with_paraphrase"] == 40 and report["by_source"]["model"] >= 12, report["by_source"]
    for before, after in zip(records, out):
        assert check_paraphrase(before.question, before.subject, after.paraphrased_question)[1] is None
        if after.paraphrased_question != rule_paraphrase(before.question)[0]:  # the model's
            assert rephrase.answer_type_kept(before.question, after.paraphrased_question)
