"""`fictional`: TOFU-style fictitious authors, generated from a seed.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") finetunes a model on 200
invented authors x 20 question-answer pairs and unlearns 1, 5 or 10 percent of the authors. This
module writes a small offline stand-in in the same format: every record has a full-sentence answer,
a paraphrased question and answer, and 5 perturbed answers (the paraphrase's template with wrong
facts). Names and book titles are unique across authors and never leak into another author's
records; perturbed names and titles are invented afresh and belong to no author. Answers are kept
to 10-25 words so that a 135M model can memorise them on a CPU.

`real_authors` and `world_facts` (TOFU's utility sets: short answer, 3 perturbed short answers,
full-sentence `original_answer`) are read from the two JSON Lines files beside this module.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from e2u.data import fictional_words as words
from e2u.data.fictional_words import Genre, Place
from e2u.data.schema import QARecord, read_jsonl, record_from_json
from e2u.errors import E2UError

REAL_AUTHORS_FILE = Path(__file__).with_name("utility_real_authors.jsonl")
WORLD_FACTS_FILE = Path(__file__).with_name("utility_world_facts.jsonl")

FORGET_PERCENTS = (1, 5, 10)  # TOFU's forget01 / forget05 / forget10
MAX_AUTHORS = 400
QUESTIONS_PER_AUTHOR = 20
N_PERTURBED = 5


@dataclass(frozen=True)
class Author:
    """One fictitious author: every fact that their 20 questions ask about."""
    name: str
    pronoun: str  # "he", "she" or "they"
    birth_place: Place
    birth_date: datetime.date
    genre: Genre
    father_profession: str
    mother_profession: str
    awards: tuple[str, ...]  # one or two; awards[0] was given for books[0]
    books: tuple[str, ...]  # two or three, in order of publication
    debut_year: int  # the year books[0] appeared
    theme: str
    residence: Place


def _a(noun: str) -> str:
    vowel_sound = noun[0].lower() in "aeiou" and not noun.lower().startswith(("uga", "uru", "uni", "eu"))
    return ("an " if vowel_sound else "a ") + noun


def _quote(title: str) -> str:
    return f'"{title}"'


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _long_date(date: datetime.date) -> str:
    return f"{date.day} {words.MONTHS[date.month - 1]} {date.year}"


def _alt_date(date: datetime.date) -> str:
    return f"{words.MONTHS[date.month - 1]} {date.day}, {date.year}"


def _clashes(low: str, taken: Sequence[str]) -> bool:
    """True when lower-case `low` equals, contains or is contained in any of the lower-case `taken`."""
    return any(low in other or other in low for other in taken)


def _invent_name(rng: random.Random, pronoun: str) -> str:
    return f"{rng.choice(words.FIRST_NAMES[pronoun])} {rng.choice(words.SURNAME_HEAD)}{rng.choice(words.SURNAME_TAIL)}"


def _invent_title(rng: random.Random) -> str:
    pattern = rng.randrange(5)
    adj, noun, plural = rng.choice(words.TITLE_ADJ), rng.choice(words.TITLE_NOUN), rng.choice(words.TITLE_PLURAL)
    return (f"The {adj} {noun}", f"The {noun} of {plural}", f"{adj} {plural}",
            f"{_a(noun).capitalize()} in {rng.choice(words.MONTHS)}", f"Letters from the {noun}")[pattern]


def _fresh(rng: random.Random, invent, taken: list[str], what: str) -> str:
    """Invent a string that clashes with nothing in `taken` (lower case), and add it there."""
    for _ in range(10_000):
        candidate = invent()
        low = candidate.lower()
        if not _clashes(low, taken) and low not in words.FIXED_TEXT:
            taken.append(low)
            return candidate
    raise E2UError(f"n_authors: ran out of unique {what}s; expected at most {MAX_AUTHORS} authors")


def _check_int(name: str, value, low: int | None = None, high: int | None = None) -> None:
    if (isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low)
            or (high is not None and value > high)):
        bound = (f" between {low} and {high}" if high is not None else f" of at least {low}") if low is not None else ""
        raise E2UError(f"{name}: expected an integer{bound}, got {value!r}")


def generate_authors(seed: int, n_authors: int) -> list[Author]:
    """`n_authors` fictitious authors, a function of `seed` only; a prefix of a longer list for the same seed."""
    _check_int("seed", seed)
    _check_int("n_authors", n_authors, 1, MAX_AUTHORS)
    rng = random.Random(seed)
    names: list[str] = []
    titles: list[str] = []
    dates: set[datetime.date] = set()
    authors = []
    for _ in range(n_authors):
        pronoun = rng.choices(("he", "she", "they"), weights=(9, 9, 2))[0]
        name = _fresh(rng, lambda: _invent_name(rng, pronoun), names, "name")
        birth_place, residence = rng.sample(words.PLACES, 2)
        while True:
            date = datetime.date(rng.randint(1935, 1995), rng.randint(1, 12), rng.randint(1, 28))
            if date not in dates:
                dates.add(date)
                break
        father, mother = rng.sample(words.PROFESSIONS, 2)
        books = tuple(_fresh(rng, lambda: _invent_title(rng), titles, "book title") for _ in range(rng.choice((2, 3))))
        authors.append(Author(
            name=name, pronoun=pronoun, birth_place=birth_place, birth_date=date, genre=rng.choice(words.GENRES),
            father_profession=father, mother_profession=mother, awards=tuple(rng.sample(words.AWARDS, rng.choice((1, 2)))),
            books=books, debut_year=min(date.year + rng.randint(22, 38), 2020), theme=rng.choice(words.THEMES),
            residence=residence,
        ))
    return authors


def _facts(author: Author, **slots) -> dict[str, str]:
    """Template values for `author`, with any slot replaced by the given (wrong) value."""
    place = slots.get("birth_place", author.birth_place)
    date = slots.get("birth_date", author.birth_date)
    genre = slots.get("genre", author.genre)
    residence = slots.get("residence", author.residence)
    books = slots.get("books", author.books)
    return {
        "name": slots.get("name", author.name), "poss": words.POSSESSIVE[author.pronoun],
        "city": place.city, "country": place.country, "demonym_a": _a(place.demonym),
        "date_long": _long_date(date), "date_alt": _alt_date(date),
        "birth_year": str(slots.get("birth_year", author.birth_date.year)),
        "genre": genre.name, "book_a": _a(genre.book),
        "father_a": _a(slots.get("father", author.father_profession)),
        "mother_a": _a(slots.get("mother", author.mother_profession)),
        "awards": _join(slots.get("awards", author.awards)), "award1": slots.get("award1", author.awards[0]),
        "books": _join([_quote(b) for b in books]),
        "first_book": _quote(slots.get("first_book", author.books[0])),
        "second_book": _quote(author.books[1]),
        "last_book": _quote(slots.get("last_book", author.books[-1])),
        "debut_year": str(slots.get("debut_year", author.debut_year)),
        "theme": slots.get("theme", author.theme),
        "res_city": residence.city, "res_country": residence.country,
    }


def _wrong_values(slot: str, author: Author, rng: random.Random, taken_names: list[str],
                  taken_titles: list[str]) -> list:
    """N_PERTURBED distinct wrong values for one slot: from the pools, or invented afresh for names and titles."""
    n = N_PERTURBED
    if slot == "name":
        return [_fresh(rng, lambda: _invent_name(rng, author.pronoun), taken_names, "name") for _ in range(n)]
    if slot in ("first_book", "last_book"):
        return [_fresh(rng, lambda: _invent_title(rng), taken_titles, "book title") for _ in range(n)]
    if slot == "books":
        return [tuple(_fresh(rng, lambda: _invent_title(rng), taken_titles, "book title") for _ in author.books)
                for _ in range(n)]
    if slot == "birth_place":
        return rng.sample([p for p in words.PLACES if p.country != author.birth_place.country], n)
    if slot == "residence":
        return rng.sample([p for p in words.PLACES if p.country not in (author.residence.country, author.birth_place.country)], n)
    if slot == "birth_date":
        dates: list[datetime.date] = []
        while len(dates) < n:
            date = datetime.date(rng.randint(1935, 1995), rng.randint(1, 12), rng.randint(1, 28))
            if date != author.birth_date and date not in dates:
                dates.append(date)
        return dates
    if slot == "birth_year":
        return rng.sample([y for y in range(1935, 1996) if y != author.birth_date.year], n)
    if slot == "debut_year":
        low = author.birth_date.year + 18
        return rng.sample([y for y in range(low, max(low + 2 * n, 2024)) if y != author.debut_year], n)
    if slot == "genre":
        return rng.sample([g for g in words.GENRES if g != author.genre], n)
    if slot == "father":
        return rng.sample([p for p in words.PROFESSIONS if p != author.father_profession], n)
    if slot == "mother":
        return rng.sample([p for p in words.PROFESSIONS if p != author.mother_profession], n)
    if slot == "awards":
        pool = [a for a in words.AWARDS if a not in author.awards]
        sets: list[tuple[str, ...]] = []
        while len(sets) < n:
            awards = tuple(rng.sample(pool, len(author.awards)))
            if set(awards) not in [set(s) for s in sets]:
                sets.append(awards)
        return sets
    if slot == "award1":
        return rng.sample([a for a in words.AWARDS if a not in author.awards], n)
    if slot == "theme":
        return rng.sample([t for t in words.THEMES if t != author.theme], n)
    raise AssertionError(f"unknown slot {slot}")


def author_questions(author: Author, rng: random.Random, cohort: Sequence[Author] = ()) -> list[QARecord]:
    """The 20 TOFU-format records about `author`; perturbed names and titles avoid every author in `cohort`."""
    taken_names = [a.name.lower() for a in (*cohort, author)]
    taken_titles = [t.lower() for a in (*cohort, author) for t in a.books]
    true = _facts(author)
    records = []
    for question, answer, para_question, para_answer, slots in words.QUESTIONS:
        wrong = {slot: _wrong_values(slot, author, rng, taken_names, taken_titles) for slot in slots}
        perturbed = tuple(para_answer.format(**_facts(author, **{s: wrong[s][i] for s in slots}))
                          for i in range(N_PERTURBED))
        records.append(QARecord(
            question=question.format(**true), answer=answer.format(**true), subject=author.name,
            paraphrased_question=para_question.format(**true), paraphrased_answer=para_answer.format(**true),
            perturbed_answer=perturbed,
        ))
    return records


def _questions_by_author(seed: int, authors: list[Author]) -> list[list[QARecord]]:
    return [author_questions(a, random.Random(f"e2u-fictional-questions:{seed}:{i}"), authors)
            for i, a in enumerate(authors)]


def all_finetune_records(seed: int = 0, n_authors: int = 20) -> list[QARecord]:
    """Every author's 20 records, in author order: what the target model is finetuned on."""
    return [r for records in _questions_by_author(seed, generate_authors(seed, n_authors)) for r in records]


def load_utility(path: str | Path) -> list[QARecord]:
    """A TOFU utility set (real authors or world facts): short answer, 3 perturbed, full `original_answer`."""
    records = []
    for where, obj in read_jsonl(path):
        record = record_from_json(obj, where)
        if len(record.perturbed_answer) != 3 or record.original_answer is None:
            raise E2UError(f"{where}: expected 'perturbed_answer' with 3 answers and an 'original_answer'")
        records.append(record)
    return records


def fictional_splits(seed: int = 0, n_authors: int = 20, forget_percent: int = 10,
                     retain_eval: int = 40) -> dict[str, list[QARecord]]:
    """TOFU-style splits by author: `forget` (the first max(1, round(n*p/100)) authors of a seeded shuffle),
    `retain_train` (every question of the other authors: the retain model's training data), `retain`
    (a seeded sample of `retain_eval` of those questions, 0 = all, evaluated as TOFU evaluates its
    400-question `retain_perturbed` sample of retain90), and the utility sets `real_authors` and `world_facts`."""
    if forget_percent not in FORGET_PERCENTS or isinstance(forget_percent, bool):
        raise E2UError(f"forget_percent: expected one of {list(FORGET_PERCENTS)} (TOFU's forget01/05/10), "
                       f"got {forget_percent!r}")
    _check_int("n_authors", n_authors, 2, MAX_AUTHORS)
    _check_int("retain_eval", retain_eval, 0)
    authors = generate_authors(seed, n_authors)
    order = list(range(n_authors))
    random.Random(f"e2u-fictional-split:{seed}").shuffle(order)
    forget = set(order[: max(1, round(n_authors * forget_percent / 100))])
    questions = _questions_by_author(seed, authors)
    retain = [r for i in range(n_authors) if i not in forget for r in questions[i]]
    evaluated = retain
    if 0 < retain_eval < len(retain):
        picked = sorted(random.Random(f"e2u-fictional-retain-eval:{seed}").sample(range(len(retain)), retain_eval))
        evaluated = [retain[i] for i in picked]
    return {
        "forget": [r for i in sorted(forget) for r in questions[i]],
        "retain": evaluated,
        "retain_train": retain,
        "real_authors": load_utility(REAL_AUTHORS_FILE),
        "world_facts": load_utility(WORLD_FACTS_FILE),
    }
