"""The `probe` setting: real-world facts the model under study turns out to know.

`probe_entities.jsonl` (written for this project) lists real-world entities of a few types
(countries, cities, scientists, writers, painters, composers, inventions, landmarks, companies,
chemical elements), each with three or four facts: a question naming the entity, a paraphrase,
a short golden answer and the aliases accepted for it. None of these entities is in the embedded
`mini` set or in the question bank of the covariance corpus (`editing/corpus.py`); a test checks
this, so the statistics corpus stays disjoint from the evaluation data.

`probe_splits` asks the model about entities in a seeded random order (its chat template, greedy), a
chunk of entities at a time, until it has found enough it knows, and keeps what it knows:

* a fact is *known* when the model's answer names the golden answer or an alias (whole words;
  case, accents and punctuation ignored) before it names any *rival*: an answer to the same question
  form for another entity (so "Spanish, French and Italian" does not count as knowing "Italian");
* an entity is *known* when at least `min_known` (default half) of its facts are known;
* the first known entities in that order are cut into forget and neighbour entities (the same
  distribution as a seeded sample of all known entities, for a fraction of the generation).

Only the *known facts* of a known entity become records. The closer-look real-world set keeps all
20 questions of an entity, including those the model gets wrong; here a fact the model never knew
cannot be forgotten, and its answer (a hallucination) would blur both the forget and the neighbour
scores, so it is left out. As in the real-world set, `answer` is the model's own answer and
`golden_answer` the short truth; `paraphrased_answer` is the golden answer and `perturbed_answer`
holds golden answers of the same question form for other entities (wrong answers).

The model's answers are cached as JSON under `$E2U_HOME/probe/`, keyed by the model fingerprint,
the rendered prompts (tokenizer and chat template), the entities' content and the generation length.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import E2UError
from ..evaluate import generate_answers
from ..files import e2u_home, sha256_of_json, write_json_atomic
from ..models import model_fingerprint
from ..prompts import question_ids
from .schema import QARecord, read_jsonl

log = logging.getLogger(__name__)

ENTITY_FILE = Path(__file__).with_name("probe_entities.jsonl")
N_PERTURBED = 5


@dataclass(frozen=True)
class Fact:
    """One question about an entity; `template` names the question form shared across entities."""

    entity: str
    type: str
    template: str
    question: str
    paraphrased_question: str
    answer: str
    aliases: tuple[str, ...] = ()

    @property
    def form(self) -> str:
        """The key under which golden answers of other entities serve as perturbed answers."""
        return f"{self.type}/{self.template}"

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)


@dataclass(frozen=True)
class Entity:
    name: str
    type: str
    facts: tuple[Fact, ...]


def load_entities(path: str | Path = ENTITY_FILE) -> list[Entity]:
    """Read and validate an entity file; any malformed line stops with the file and line named."""
    entities, names, questions = [], set(), set()
    for where, obj in read_jsonl(path):
        if not isinstance(obj, dict):
            raise E2UError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        name, kind = _string(obj, "entity", where), _string(obj, "type", where)
        if name in names:
            raise E2UError(f"{where}: entity {name!r} appears twice")
        raw = obj.get("facts")
        if not isinstance(raw, list) or not raw:
            raise E2UError(f"{where}: field 'facts' must be a non-empty list")
        facts = []
        for i, item in enumerate(raw):
            at = f"{where} fact {i}"
            if not isinstance(item, dict):
                raise E2UError(f"{at}: expected a JSON object")
            aliases = item.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
                raise E2UError(f"{at}: field 'aliases' must be a list of non-empty strings")
            fact = Fact(name, kind, _string(item, "template", at), _string(item, "question", at),
                        _string(item, "paraphrased_question", at), _string(item, "answer", at), tuple(aliases))
            if name not in fact.question:
                raise E2UError(f"{at}: the question {fact.question!r} does not contain the entity {name!r}")
            if mentions(fact.question + " " + fact.paraphrased_question, fact.accepted):
                raise E2UError(f"{at}: the questions give away an accepted answer of {fact.accepted}")
            if fact.question in questions:
                raise E2UError(f"{at}: question {fact.question!r} appears twice")
            questions.add(fact.question)
            facts.append(fact)
        names.add(name)
        entities.append(Entity(name, kind, tuple(facts)))
    if not entities:
        raise E2UError(f"entity file {path} holds no entities")
    return entities


def _string(obj: dict, name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise E2UError(f"{where}: field {name!r} must be a non-empty string")
    return value


def normalise(text: str) -> str:
    """Lower case, accents dropped, every run of non-alphanumerics one space, padded with spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " " + " ".join(re.sub(r"[^0-9a-z]+", " ", text).split()) + " "


def mentions(answer: str, accepted: Sequence[str]) -> bool:
    """Whether `answer` contains one of `accepted` as whole words (see `normalise`)."""
    said = normalise(answer)
    return any(normalise(a).strip() and normalise(a) in said for a in accepted)


def names_first(answer: str, accepted: Sequence[str], rivals: Sequence[str]) -> bool:
    """Whether `answer` names one of `accepted` before any of `rivals` (a longer name wins a tie)."""
    said = normalise(answer)

    def first(options):
        found = [(said.find(n), -len(n)) for n in map(normalise, options) if n.strip() and n in said]
        return min(found, default=None)

    right, wrong = first(accepted), first(rivals)
    return right is not None and (wrong is None or right < wrong)


def rivals(fact: Fact, entities: Sequence[Entity], with_aliases: bool = True) -> list[str]:
    """Answers to the same question form for other entities that are wrong for `fact` (no duplicates)."""
    right = [normalise(a) for a in fact.accepted]
    out = {}
    for entity in entities:
        for other in entity.facts:
            if entity.name == fact.entity or other.form != fact.form:
                continue
            for candidate in other.accepted if with_aliases else (other.answer,):
                said = normalise(candidate)
                if not any(a in said or said in a for a in right):  # neither names the other
                    out[candidate] = None
    return list(out)


def probe_answers(
    model, tokenizer, entities: Sequence[Entity], max_new_tokens: int = 32, batch_size: int = 32,
    cache_dir: str | Path | None = None,
) -> dict[str, str]:
    """The model's greedy answer to every question, `{question: answer}`, cached on disk.

    A cache file that cannot be read, or that belongs to another model or entity list, is
    recomputed rather than trusted.
    """
    questions = [f.question for e in entities for f in e.facts]
    prompts = [question_ids(tokenizer, q) for q in questions]
    key = {
        "model": model_fingerprint(model),
        "entities": sha256_of_json([[f.__dict__ for f in e.facts] for e in entities]),
        "prompts": sha256_of_json(prompts),
        "max_new_tokens": max_new_tokens,
    }
    path = Path(cache_dir) if cache_dir is not None else e2u_home() / "probe"
    path = path / f"{key['model']}-{sha256_of_json(key)[:16]}.json"
    cached = _read_cache(path, key, questions)
    if cached is not None:
        return cached
    log.info("asking %d probe questions (%d entities)", len(questions), len(entities))
    answers = dict(zip(questions, generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size)))
    write_json_atomic(path, {**key, "answers": answers})
    return answers


def _read_cache(path: Path, key: dict, questions: Sequence[str]) -> dict[str, str] | None:
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        answers = payload["answers"]
        if any(payload[k] != v for k, v in key.items()) or not all(isinstance(answers[q], str) for q in questions):
            raise ValueError("does not match")
        return {q: answers[q] for q in questions}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        log.warning("probe cache %s is unusable (%s); asking again", path, exc)
        return None


def known_facts(
    entities: Sequence[Entity], answers: dict[str, str], min_known: float = 0.5, rivals_from: Sequence[Entity] | None = None,
) -> dict[str, list[Fact]]:
    """`{entity name: facts the model knows}` for every entity with at least `min_known` of its facts known.

    Rival answers come from `rivals_from` (default: `entities`)."""
    known = {}
    for entity in entities:
        facts = [f for f in entity.facts
                 if names_first(answers[f.question], f.accepted, rivals(f, rivals_from or entities))]
        if len(facts) >= min_known * len(entity.facts):
            known[entity.name] = facts
    return known


def perturbed_answers(fact: Fact, entities: Sequence[Entity], seed: int = 0, n: int = N_PERTURBED) -> tuple[str, ...]:
    """Up to `n` golden answers of the same question form for other entities, none of them right."""
    pool = rivals(fact, entities, with_aliases=False)
    random.Random(f"{seed}:{fact.question}").shuffle(pool)
    return tuple(pool[:n])


def _first_known(model, tokenizer, entities, wanted, seed, min_known, max_new_tokens, batch_size, cache_dir):
    """Ask about entities in a seeded random order, a chunk at a time, until `wanted` are known.

    Returns ({name: known facts} in that order, {question: answer}, entities asked). Only as many
    questions as needed are generated; each chunk's answers are cached on their own, so a rerun with
    the same seed generates nothing. Rivals (`known_facts`) are drawn from the whole entity list.
    """
    position = {entity.name: i for i, entity in enumerate(entities)}
    order = list(entities)
    random.Random(seed).shuffle(order)
    known: dict[str, list[Fact]] = {}
    answers: dict[str, str] = {}
    asked = 0
    while len(known) < wanted and asked < len(order):
        chunk = order[asked : asked + max(8, 4 * (wanted - len(known)))]
        asked += len(chunk)
        # Asked in file order, so a chunk holding every entity shares the full probe's cache.
        in_file_order = sorted(chunk, key=lambda entity: position[entity.name])
        answers.update(probe_answers(model, tokenizer, in_file_order, max_new_tokens, batch_size, cache_dir))
        known.update(known_facts(chunk, answers, min_known, rivals_from=entities))
    return known, answers, asked


def probe_splits(
    model, tokenizer, n_forget: int = 10, n_neighbour: int = 10, seed: int = 0, cache_dir: str | Path | None = None,
    *, min_known: float = 0.5, max_new_tokens: int = 32, batch_size: int = 32, entities_path: str | Path | None = None,
) -> dict[str, list[QARecord]]:
    """`{"forget": [...], "neighbour": [...]}`: the known facts of `n_forget` and `n_neighbour` known entities.

    Entities are disjoint between the two splits; the same model, file and seed give the same split.
    """
    for name, value, least in (("n_forget", n_forget, 1), ("n_neighbour", n_neighbour, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise E2UError(f"{name}: expected an integer >= {least}, got {value!r}")
    if not 0 < min_known <= 1:
        raise E2UError(f"min_known: expected a fraction in (0, 1], got {min_known!r}")
    path = Path(entities_path) if entities_path is not None else ENTITY_FILE
    entities = load_entities(path)
    wanted = n_forget + n_neighbour
    known, answers, asked = _first_known(model, tokenizer, entities, wanted, seed, min_known, max_new_tokens,
                                         batch_size, cache_dir)
    log.info("model knows %d of %d probed entities (%d facts)", len(known), asked, sum(len(f) for f in known.values()))
    if len(known) < wanted:
        raise E2UError(
            f"the model knows {len(known)} of {len(entities)} probed entities (at least "
            f"{math.ceil(min_known * 100)}% of an entity's facts answered correctly); asked for "
            f"{n_forget} forget + {n_neighbour} neighbour = {wanted} entities"
        )
    names = list(known)[:wanted]

    def records(chosen: list[str]) -> list[QARecord]:
        return [
            QARecord(
                question=f.question, answer=answers[f.question], subject=f.entity,
                paraphrased_question=f.paraphrased_question, paraphrased_answer=f.answer,
                perturbed_answer=perturbed_answers(f, entities, seed), golden_answer=f.answer,
            )
            for name in chosen for f in known[name]
        ]

    return {"forget": records(names[:n_forget]), "neighbour": records(names[n_forget:])}
