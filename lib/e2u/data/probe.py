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

The model's answers are cached as JSON under `$E2U_HOME/probe/` (`e2u.cache`: the key is stored in
the entry and checked on read), keyed by the model fingerprint, the rendered prompts (tokenizer and
chat template), the entities' content and the generation length.

The data layer does not import the evaluation: the caller passes the generation function,
`generate(model, tokenizer, prompts, max_new_tokens, batch_size) -> list[str]` (the cell passes
`e2u.evaluation.evaluate.generate_answers`). The options and their defaults live in `ProbeOptions` alone; the
study file's `data:` options for the `probe` source are its fields.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from e2u import cache
from e2u.data.entities import ENTITY_FILE, Entity, Fact, load_entities, names_first, rivals
from e2u.data.options import SourceOptions
from e2u.data.schema import QARecord
from e2u.errors import E2UError
from e2u.files import sha256_of_json
from e2u.model.load import model_fingerprint
from e2u.model.prompts import question_ids

log = logging.getLogger(__name__)

N_PERTURBED = 5

# generate(model, tokenizer, prompts (token ids), max_new_tokens, batch_size) -> one greedy answer per prompt
Generate = Callable[[Any, Any, Sequence[Sequence[int]], int, int], list[str]]


@dataclass(frozen=True)
class ProbeOptions(SourceOptions):
    """The `probe` source's options and their defaults (the study file's `data:` options, `probe_splits`'s
    keyword arguments). Values are checked on construction; a bad one is an error naming it."""
    SOURCE = "probe"

    n_forget: int = 8  # known entities whose facts become the forget split
    n_neighbour: int = 8  # further known entities: the neighbour split
    seed: int = 0  # the order entities are asked in, and the perturbed answers' draw
    min_known: float = 0.5  # the fraction of an entity's facts the model must know
    max_new_tokens: int = 32  # generation length of the model's answers
    batch_size: int = 32  # generation batch size
    entities_path: str | None = None  # an entity file in place of the embedded `probe_entities.jsonl`

    def __post_init__(self) -> None:
        self.require_counts({"n_forget": 1, "n_neighbour": 0, "max_new_tokens": 1, "batch_size": 1})
        if isinstance(self.min_known, bool) or not isinstance(self.min_known, (int, float)) or not 0 < self.min_known <= 1:
            raise E2UError(f"min_known: expected a fraction in (0, 1], got {self.min_known!r}")
        if self.entities_path is not None and not (isinstance(self.entities_path, (str, Path)) and str(self.entities_path)):
            raise E2UError(f"entities_path: expected the path of an entity file, got {self.entities_path!r}")


def probe_answers(
    model, tokenizer, generate: Generate, entities: Sequence[Entity],
    max_new_tokens: int = ProbeOptions.max_new_tokens, batch_size: int = ProbeOptions.batch_size,
    cache_dir: str | Path | None = None,
) -> dict[str, str]:
    """The model's answer (from `generate`) to every question, `{question: answer}`, cached on disk.

    Entries live under `<cache_dir or $E2U_HOME>/probe/`. One that cannot be read, or that belongs to
    another model or entity list, is recomputed rather than trusted.
    """
    questions = [f.question for e in entities for f in e.facts]
    prompts = [question_ids(tokenizer, q) for q in questions]
    content = {"entities": sha256_of_json([[f.__dict__ for f in e.facts] for e in entities])}
    return cached_generations(model, tokenizer, generate, "probe", questions, prompts, max_new_tokens, batch_size,
                              cache_dir, content)


def cached_generations(
    model, tokenizer, generate: Generate, kind: str, labels: Sequence[str], prompts: Sequence[Sequence[int]],
    max_new_tokens: int, batch_size: int, cache_dir: str | Path | None = None, content: Mapping | None = None,
) -> dict[str, str]:
    """`{label: generation}` for one prompt per label, cached as JSON under `<cache_dir or $E2U_HOME>/<kind>/`.

    The key is the model fingerprint, `content` (what else the answers depend on), the prompts' hash and
    the generation length; an entry made for another key, or lacking a label, is generated again.
    """
    key = {"model": model_fingerprint(model), **dict(content or {}),
           "prompts": sha256_of_json(list(prompts)), "max_new_tokens": max_new_tokens}
    path = cache.entry_path(kind, key, prefix=f"{key['model']}-",
                            home=Path(cache_dir) if cache_dir is not None else None)
    stored = cache.read_json(path, key)
    if isinstance(stored, dict) and all(isinstance(stored.get(q), str) for q in labels):
        return {q: stored[q] for q in labels}
    if stored is not None:
        log.warning("%s cache %s lacks answers to some questions; asking again", kind, path)
    log.info("generating %d %s answers", len(prompts), kind)
    answers = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    if len(answers) != len(prompts) or not all(isinstance(a, str) for a in answers):
        raise E2UError(f"generate: expected {len(prompts)} answers (strings), got {len(answers)}")
    answers = dict(zip(labels, answers))
    cache.write_json(path, key, answers)
    return answers


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


def _first_known(model, tokenizer, generate, entities, wanted, seed, min_known, max_new_tokens, batch_size,
                 cache_dir):
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
        answers.update(probe_answers(model, tokenizer, generate, in_file_order, max_new_tokens, batch_size,
                                     cache_dir))
        known.update(known_facts(chunk, answers, min_known, rivals_from=entities))
    return known, answers, asked


def probe_splits(
    model, tokenizer, generate: Generate, *, cache_dir: str | Path | None = None, **options,
) -> dict[str, list[QARecord]]:
    """`{"forget": [...], "neighbour": [...]}`: the known facts of `n_forget` and `n_neighbour` known entities.

    `generate(model, tokenizer, prompts, max_new_tokens, batch_size) -> list[str]` answers the questions
    (`e2u.evaluation.evaluate.generate_answers`); `options` are `ProbeOptions` fields, defaults from there. Entities
    are disjoint between the two splits; the same model, file and seed give the same split.
    """
    opts = ProbeOptions.of(options)
    n_forget, n_neighbour, seed, min_known = opts.n_forget, opts.n_neighbour, opts.seed, opts.min_known
    path = Path(opts.entities_path).expanduser() if opts.entities_path is not None else ENTITY_FILE
    entities = load_entities(path)
    wanted = n_forget + n_neighbour
    known, answers, asked = _first_known(model, tokenizer, generate, entities, wanted, seed, min_known,
                                         opts.max_new_tokens, opts.batch_size, cache_dir)
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
