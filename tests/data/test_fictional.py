"""The embedded `fictional` data set: TOFU-format (Maini et al. 2024) records about seeded fictitious authors."""

from __future__ import annotations

import ast
import json
import random
import re
from pathlib import Path

import pytest

from e2u.data import fictional
from e2u.data.fictional import (
    all_finetune_records,
    author_questions,
    fictional_splits,
    generate_authors,
    load_utility,
)
from e2u.errors import E2UError

LIB = Path(fictional.__file__).resolve().parents[1]


def _records_by_author(seed: int, n_authors: int):
    authors = generate_authors(seed, n_authors)
    records = all_finetune_records(seed, n_authors)
    return authors, [records[20 * i: 20 * (i + 1)] for i in range(n_authors)]


def _texts(record, perturbed=True):
    texts = [record.question, record.answer, record.paraphrased_question, record.paraphrased_answer]
    return texts + list(record.perturbed_answer) if perturbed else texts


def test_same_seed_gives_identical_records_and_another_seed_different_ones():
    assert fictional_splits(seed=3) == fictional_splits(seed=3)
    assert generate_authors(3, 20) == generate_authors(3, 20)
    assert all_finetune_records(3, 20) != all_finetune_records(4, 20)
    assert {a.name for a in generate_authors(3, 20)} != {a.name for a in generate_authors(4, 20)}


def test_a_larger_set_extends_a_smaller_one_for_the_same_seed():
    assert generate_authors(5, 30)[:10] == generate_authors(5, 10)


def test_generation_leaves_the_global_random_state_alone():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    fictional_splits(seed=1)
    assert random.random() == expected


def test_every_author_has_20_records_with_paraphrases_and_5_distinct_wrong_perturbations():
    authors, by_author = _records_by_author(0, 40)
    for author, records in zip(authors, by_author):
        assert len(records) == 20
        assert len({r.question for r in records}) == 20
        for r in records:
            assert r.subject == author.name
            assert r.paraphrased_question and r.paraphrased_question != r.question
            assert r.paraphrased_answer and r.paraphrased_answer != r.answer
            assert len(r.perturbed_answer) == 5 and len(set(r.perturbed_answer)) == 5
            assert r.answer not in r.perturbed_answer and r.paraphrased_answer not in r.perturbed_answer
            assert 5 <= len(r.answer.split()) <= 25, r.answer


def test_name_appears_in_at_least_18_questions_and_in_their_paraphrases():
    authors, by_author = _records_by_author(1, 40)
    for author, records in zip(authors, by_author):
        named = [r for r in records if author.name in r.question]
        assert len(named) >= 18
        assert all(author.name in r.paraphrased_question for r in named)


def test_names_and_book_titles_are_unique_across_authors():
    authors = generate_authors(2, 200)
    assert len({a.name for a in authors}) == 200
    titles = [t.lower() for a in authors for t in a.books]
    assert len(set(titles)) == len(titles)
    assert all(2 <= len(a.books) <= 3 and 1 <= len(a.awards) <= 2 for a in authors)
    assert len({(a.birth_place, a.birth_date) for a in authors}) == 200  # "the author born in X on D" is unique


@pytest.mark.parametrize("seed, n_authors", [(0, 100), (7, 60), (11, 60)])
def test_no_record_mentions_another_authors_name_or_book_title(seed, n_authors):
    authors, by_author = _records_by_author(seed, n_authors)
    for i, records in enumerate(by_author):
        blob = "\n".join(t for r in records for t in _texts(r)).lower()
        for j, other in enumerate(authors):
            if i == j:
                continue
            assert other.name.lower() not in blob, (authors[i].name, other.name)
            for title in other.books:
                assert title.lower() not in blob, (authors[i].name, title)


def test_perturbed_names_and_titles_are_invented_and_belong_to_no_author():
    authors, by_author = _records_by_author(0, 60)
    names = [a.name.lower() for a in authors]
    titles = [t.lower() for a in authors for t in a.books]
    for records in by_author:
        name_question = records[0]  # "What is the full name of the author born in ...?"
        books_question = next(r for r in records if r.question.startswith("What books has"))
        for wrong in name_question.perturbed_answer:
            assert not any(n in wrong.lower() for n in names), wrong
        for wrong in books_question.perturbed_answer:
            assert not any(t in wrong.lower() for t in titles), wrong


@pytest.mark.parametrize("n_authors, percent, n_forget", [
    (20, 1, 1), (20, 5, 1), (20, 10, 2), (100, 1, 1), (100, 5, 5), (100, 10, 10),
])
def test_splits_follow_tofu_proportions_by_author(n_authors, percent, n_forget):
    splits = fictional_splits(seed=0, n_authors=n_authors, forget_percent=percent)
    forget = {r.subject for r in splits["forget"]}
    retain = {r.subject for r in splits["retain_train"]}
    assert len(forget) == n_forget and len(splits["forget"]) == 20 * n_forget
    assert len(splits["retain_train"]) == 20 * (n_authors - n_forget)
    assert len(splits["retain"]) == 40
    # the retain evaluation set is a sample of retain_train in its order (a subsequence, no repeats)
    position = {repr(r): i for i, r in enumerate(splits["retain_train"])}
    picked = [position[repr(r)] for r in splits["retain"]]
    assert picked == sorted(set(picked))
    assert not forget & retain
    assert forget | retain == {a.name for a in generate_authors(0, n_authors)}
    assert sorted(splits["forget"] + splits["retain_train"], key=repr) == sorted(all_finetune_records(0, n_authors), key=repr)


def test_forget_authors_depend_on_the_seed():
    chosen = {frozenset(r.subject for r in fictional_splits(seed=s, n_authors=20)["forget"]) for s in range(5)}
    assert len(chosen) == 5


def test_retain_eval_zero_or_larger_than_the_retain_set_evaluates_every_retain_question():
    for retain_eval in (0, 10_000):
        splits = fictional_splits(seed=0, n_authors=20, forget_percent=10, retain_eval=retain_eval)
        assert splits["retain"] == splits["retain_train"] and len(splits["retain"]) == 20 * 18


def test_the_first_record_asks_the_authors_full_name():
    authors, by_author = _records_by_author(0, 10)
    for author, records in zip(authors, by_author):
        first = records[0]
        assert first.question.startswith("What is the full name of the author born in ")
        assert author.name not in first.question and author.name in first.answer
        assert author.name in first.paraphrased_answer


@pytest.mark.parametrize("call, parameter", [
    (lambda: fictional_splits(forget_percent=7), "forget_percent"),
    (lambda: fictional_splits(forget_percent=True), "forget_percent"),
    (lambda: fictional_splits(n_authors=1), "n_authors"),
    (lambda: fictional_splits(n_authors="20"), "n_authors"),
    (lambda: fictional_splits(retain_eval=-1), "retain_eval"),
    (lambda: generate_authors(0, 0), "n_authors"),
    (lambda: generate_authors(0, 10_000), "n_authors"),
    (lambda: generate_authors("zero", 5), "seed"),
])
def test_bad_parameters_raise_an_error_naming_the_parameter(call, parameter):
    with pytest.raises(E2UError, match=parameter):
        call()


def test_author_questions_is_deterministic_for_an_rng_seed():
    authors = generate_authors(0, 5)
    first = author_questions(authors[0], random.Random(9), authors)
    assert first == author_questions(authors[0], random.Random(9), authors)
    assert first != author_questions(authors[0], random.Random(10), authors)


# ---- utility sets (TOFU's real_authors / world_facts)

def _banned_entities() -> set[str]:
    """Entities used elsewhere: the embedded evaluation set and the statistics question bank."""
    entities = set()
    for line in (LIB / "data" / "mini.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            entities |= {row["subject"], row["answer"]}
    tree = ast.parse((LIB / "editing" / "corpus.py").read_text())
    bank = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "_BANK_ENTITIES" for t in node.targets))
    entities |= set(bank)
    entities = {re.sub(r"^the ", "", e) for e in entities}
    # surnames and the like: the last word of a multi-word proper name ("Charles Dickens" -> "Dickens")
    entities |= {e.split()[-1] for e in entities if len(e.split()) > 1 and all(w[0].isupper() for w in e.split())}
    return entities


@pytest.mark.parametrize("path", [fictional.REAL_AUTHORS_FILE, fictional.WORLD_FACTS_FILE])
def test_utility_files_load_with_three_perturbed_answers_and_no_shared_entity(path):
    records = load_utility(path)
    assert 20 <= len(records) <= 40
    assert len({r.question for r in records}) == len(records)
    banned = _banned_entities()
    for r in records:
        assert len(r.perturbed_answer) == 3 and r.answer not in r.perturbed_answer
        assert r.answer.lower() in r.original_answer.lower()  # the full sentence states the short answer
        text = " ".join([r.question, r.answer, r.original_answer, r.subject, *r.perturbed_answer])
        hits = [e for e in banned if re.search(rf"\b{re.escape(e)}\b", text, flags=re.IGNORECASE)]
        assert not hits, (r.question, hits)


def test_utility_sets_are_in_the_splits():
    splits = fictional_splits(seed=0)
    assert splits["real_authors"] == load_utility(fictional.REAL_AUTHORS_FILE)
    assert splits["world_facts"] == load_utility(fictional.WORLD_FACTS_FILE)


def test_a_malformed_utility_line_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"question": "q?", "answer": "a", "perturbed_answer": ["b", "c", "d"], "original_answer": "A.", "subject": "s"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "perturbed_answer": ["b"]}) + "\n")
    with pytest.raises(E2UError, match=r"bad\.jsonl:2"):
        load_utility(path)
