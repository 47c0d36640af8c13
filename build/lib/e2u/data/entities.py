"""Real-world entities with facts about them (`probe_entities.jsonl`), and how an answer is matched.

An answer *names* a fact's golden answer or an alias when it contains it as whole words (case,
accents and punctuation ignored); it *knows* the fact when it names it before any rival (an
answer to the same question form for another entity). The `probe` source (probe.py) asks the
model under study these questions and keeps what it knows.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from e2u.data.schema import read_jsonl
from e2u.errors import E2UError

ENTITY_FILE = Path(__file__).with_name("probe_entities.jsonl")


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
