"""The `factual` source: pretrained knowledge the model under study already has (the paper's setting).

The paper unlearns TOFU's factual questions (Maini et al. 2024, `locuslab/TOFU`: `real_authors`, 100, and
`world_facts`, 117; short answers) from the base chat model; PISTOL's harness ships them as one JSON array
`factual_data.json` of `{question, answer}` (reference/paper-protocol.md). Three places to read from:

* the embedded `factual_questions.jsonl` (default; written for this project): well-known facts with short
  answers, each line `{question, answer, aliases, category, subject, paraphrased_question}`. No question
  names an entity of `probe_entities.jsonl`, `mini.jsonl` or the covariance corpus' question bank
  (`editing/corpus.py`); a test checks this;
* the hub (`hub=True`, no path): the `<set>_perturbed` config of `locuslab/TOFU` for every set in `sets`;
* a local path: a directory of TOFU files (`<set>_perturbed.json[l]`, else `<set>.json[l]`; at least one set
  present), or one file, a JSON array (PISTOL's `factual_data.json`) or JSON Lines of `{question, answer}`.

`factual_splits` asks the model every question (its chat template, greedy, answers cached like probe.py's),
keeps the ones it answers correctly and cuts a seeded sample into forget and retain. A question is *known*
when the answer names the short answer or an alias (`entities.names_first`) before any *rival*, an answer
of another question of the same category; rows without a category (TOFU, PISTOL) need only name it
(`entities.mentions`). The split carries `report = {"known", "asked", "source"}` for the result file.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from e2u.data.entities import mentions, names_first, normalise
from e2u.data.hub import hub_rows
from e2u.data.options import SourceOptions
from e2u.data.probe import Generate, cached_generations
from e2u.data.schema import QARecord, find_split_file, read_jsonl, read_rows, record_from_json
from e2u.data.tofu import HUB_DATASET, subject_from_question
from e2u.errors import E2UError
from e2u.files import sha256_of_json
from e2u.model.prompts import question_ids

log = logging.getLogger(__name__)

EMBEDDED_FILE = Path(__file__).with_name("factual_questions.jsonl")
SETS = ("real_authors", "world_facts")  # TOFU's factual sets
N_PERTURBED = 3  # as many wrong answers as TOFU's perturbed factual rows carry
LOCAL_HINT = "a directory of TOFU real_authors_perturbed.json / world_facts_perturbed.json files, or one JSON file"


@dataclass(frozen=True)
class FactualOptions(SourceOptions):
    """The `factual` source's options and their defaults (the study file's `data:` options, `factual_splits`'s
    keyword arguments). Values are checked on construction; a bad one is an error naming it."""
    SOURCE = "factual"

    n_forget: int = 10  # known questions unlearned
    n_retain: int = 20  # further known questions: the retain (locality) split
    seed: int = 0  # the draw of the known questions, and of the embedded set's perturbed answers
    hub: bool = False  # without a path: read TOFU's sets from the hub instead of the embedded file
    sets: tuple[str, ...] = SETS  # which TOFU sets the hub or a directory gives
    max_new_tokens: int = 32  # generation length of the model's answers
    batch_size: int = 32  # generation batch size

    def __post_init__(self) -> None:
        self.require_counts({"n_forget": 1, "n_retain": 0, "max_new_tokens": 1, "batch_size": 1})
        if not isinstance(self.hub, bool):
            raise E2UError(f"hub: expected true or false, got {self.hub!r}")
        sets = self.sets
        if (not isinstance(sets, (list, tuple)) or not sets or len(set(sets)) != len(sets)
                or not all(s in SETS for s in sets)):
            raise E2UError(f"sets: expected a non-empty list of distinct names from {list(SETS)}, got {sets!r}")
        object.__setattr__(self, "sets", tuple(sets))


    @classmethod
    def defaults(cls) -> dict:
        return {**asdict(cls()), "sets": list(SETS)}


@dataclass(frozen=True)
class Question:
    """A record with what judging the model's answer needs: the accepted answers and the category."""
    record: QARecord
    aliases: tuple[str, ...] = ()
    category: str | None = None

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.record.answer, *self.aliases)


class FactualSplits(dict):
    """`{"forget": [...], "retain": [...]}` with `report`: how many questions the model knew of how many asked."""
    def __init__(self, splits: dict, report: dict):
        super().__init__(splits)
        self.report = report


# --- reading -------------------------------------------------------------------------------------

def read_embedded(path: str | Path = EMBEDDED_FILE, seed: int = 0) -> list[Question]:
    """The embedded file's questions, with perturbed answers drawn (seeded) from their category."""
    questions, seen = [], set()
    for where, obj in read_jsonl(path):
        question = _question(obj, where)
        record = question.record
        if not record.subject or record.subject not in record.question:
            raise E2UError(f"{where}: field 'subject' must be a substring of the question, got {record.subject!r}")
        if not question.category:
            raise E2UError(f"{where}: field 'category' must be a non-empty string")
        if not record.paraphrased_question or normalise(record.paraphrased_question) == normalise(record.question):
            raise E2UError(f"{where}: field 'paraphrased_question' must rephrase the question")
        if record.question in seen:
            raise E2UError(f"{where}: question {record.question!r} appears twice")
        seen.add(record.question)
        questions.append(question)
    if not questions:
        raise E2UError(f"factual question file {path} holds no questions")
    return [replace(q, record=replace(q.record, perturbed_answer=perturbed_answers(q, questions, seed)))
            for q in questions]


def read_factual(path: str | Path | None = None, options: FactualOptions | None = None) -> tuple[list[Question], str]:
    """(questions, where they came from): the embedded file, the hub, a TOFU directory or one file."""
    opts = options or FactualOptions()
    if path:
        rows = [row for file in local_files(path, opts.sets) for row in read_rows(file)]
        source = str(Path(path).expanduser())
    elif opts.hub:
        rows = [row for name in opts.sets for row in hub_rows(HUB_DATASET, f"{name}_perturbed", local_hint=LOCAL_HINT)]
        source = f"{HUB_DATASET} ({', '.join(opts.sets)})"
    else:
        return read_embedded(EMBEDDED_FILE, opts.seed), "embedded"
    questions = [_question(obj, where) for where, obj in rows]
    if not questions:
        raise E2UError(f"factual data {source} holds no questions")
    return questions, source


def local_files(path: str | Path, sets: Sequence[str] = SETS) -> list[Path]:
    """The files a local path gives: itself, or a directory's `<set>_perturbed` (else `<set>`) files."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise E2UError(f"factual data path {path} is neither a file nor a directory ({LOCAL_HINT})")
    found = [file for name in sets
             if (file := find_split_file(path, f"{name}_perturbed") or find_split_file(path, name)) is not None]
    if not found:
        wanted = " or ".join(f"{n}_perturbed.json / {n}.json" for n in sets)
        raise E2UError(f"TOFU directory {path} holds none of {wanted} (or the .jsonl equivalents)")
    return found


def factual_files(path: str | Path | None, options: Mapping | FactualOptions | None = None) -> list[Path]:
    """The files whose hashes key the caches: this module and the embedded file, or the local files read."""
    opts = options if isinstance(options, FactualOptions) else FactualOptions.of(options)
    if path:
        return [*local_files(path, opts.sets), Path(__file__)]
    return [Path(__file__)] if opts.hub else [EMBEDDED_FILE, Path(__file__)]


def _question(obj, where: str) -> Question:
    record = record_from_json(obj, where)
    aliases = obj.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise E2UError(f"{where}: field 'aliases' must be a list of non-empty strings")
    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        raise E2UError(f"{where}: field 'category' must be a string")
    if not record.subject:
        record = replace(record, subject=subject_from_question(record.question))
    return Question(record, tuple(aliases), category or None)


# --- judging -------------------------------------------------------------------------------------

def rivals(question: Question, questions: Sequence[Question], with_aliases: bool = True) -> list[str]:
    """Answers of the other questions of the same category that are wrong for `question` (no duplicates)."""
    if question.category is None:
        return []
    right = [normalise(a) for a in question.accepted]
    out = {}
    for other in questions:
        if other.category != question.category or other.record.question == question.record.question:
            continue
        for candidate in other.accepted if with_aliases else (other.record.answer,):
            said = normalise(candidate)
            if not any(a in said or said in a for a in right):  # neither names the other
                out[candidate] = None
    return list(out)


def perturbed_answers(question: Question, questions: Sequence[Question], seed: int = 0,
                      n: int = N_PERTURBED) -> tuple[str, ...]:
    """Up to `n` answers of other questions of the same category, none of them right (seeded)."""
    pool = rivals(question, questions, with_aliases=False)
    random.Random(f"{seed}:{question.record.question}").shuffle(pool)
    return tuple(pool[:n])


def is_known(answer: str, question: Question, questions: Sequence[Question]) -> bool:
    """Whether the model's `answer` names an accepted answer (before any rival, where there are categories)."""
    if question.category is None:
        return mentions(answer, question.accepted)
    return names_first(answer, question.accepted, rivals(question, questions))


def factual_answers(model, tokenizer, generate: Generate, questions: Sequence[Question], max_new_tokens: int = 32,
                    batch_size: int = 32, cache_dir: str | Path | None = None) -> dict[str, str]:
    """The model's answer to every question, `{question: answer}`, cached under `<cache_dir or $E2U_HOME>/factual/`."""
    texts = list(dict.fromkeys(q.record.question for q in questions))
    prompts = [question_ids(tokenizer, q) for q in texts]
    return cached_generations(model, tokenizer, generate, "factual", texts, prompts, max_new_tokens, batch_size,
                              cache_dir, {"questions": sha256_of_json(texts)})


def factual_splits(model, tokenizer, generate: Generate, *, path: str | Path | None = None,
                   cache_dir: str | Path | None = None, **options) -> FactualSplits:
    """`{"forget": [...], "retain": [...]}`: a seeded sample of the questions the model answers correctly.

    `generate(model, tokenizer, prompts, max_new_tokens, batch_size) -> list[str]` answers the questions
    (`e2u.evaluation.evaluate.generate_answers`); `options` are `FactualOptions` fields. Forget and retain are disjoint;
    the same model, data and seed give the same split. `.report` holds the counts known and asked.
    """
    opts = FactualOptions.of(options)
    questions, source = read_factual(path, opts)
    answers = factual_answers(model, tokenizer, generate, questions, opts.max_new_tokens, opts.batch_size, cache_dir)
    known, seen = [], set()
    for q in questions:
        if q.record.question not in seen and is_known(answers[q.record.question], q, questions):
            known.append(q.record)
        seen.add(q.record.question)
    asked = len(seen)
    log.info("the model knows %d of %d factual questions (%s)", len(known), asked, source)
    wanted = opts.n_forget + opts.n_retain
    if len(known) < wanted:
        raise E2UError(f"the model knows {len(known)} of {asked} factual questions asked ({source}); asked for "
                       f"{opts.n_forget} forget + {opts.n_retain} retain = {wanted}")
    random.Random(opts.seed).shuffle(known)
    splits = {"forget": known[:opts.n_forget], "retain": known[opts.n_forget:wanted]}
    return FactualSplits(splits, {"known": len(known), "asked": asked, "source": source})
