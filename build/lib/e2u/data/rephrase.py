"""The rephrase attack's questions: each forget question asked again in other words.

The paper attacks unlearning with rephrased forget questions, but neither PISTOL nor TOFU's factual sets carry
paraphrases, so the paper wrote its own, how is not known (reference/paper-protocol.md). Here a record keeps
the data's own `paraphrased_question` unless it equals the question (`drop_identical_paraphrases`); the others
get one written by the model under study from a few-shot prompt (`model_paraphrases`), which is kept only if
it passes `check_paraphrase`: one question ending in '?', different from the original, naming its subject,
at most `MAX_LENGTH_RATIO` times as many words. A rejected one leaves the record without a paraphrase.

Generations are cached under `$E2U_HOME/rephrase/` (`probe.cached_generations`: keyed by the model
fingerprint, the rendered prompts and the generation length).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from e2u.data.entities import normalise
from e2u.data.probe import Generate, cached_generations
from e2u.data.schema import QARecord
from e2u.data.tofu import FUNCTION_WORDS
from e2u.model.prompts import question_ids

MAX_LENGTH_RATIO = 2.5

INSTRUCTION = ("Rewrite the question in other words. Keep its meaning and keep every name in it exactly as "
               "written. Reply with the rewritten question only.")

# Written for this project; none of these is a question of the embedded data sets.
DEMONSTRATIONS = (
    ("Who wrote the novel Middlemarch?", "Which author is responsible for the novel Middlemarch?"),
    ("What is the capital of Bhutan?", "Which city serves as the capital of Bhutan?"),
    ("In which year did the Chernobyl disaster happen?", "When did the Chernobyl disaster take place?"),
    ("Which river flows through Cologne?", "Cologne lies on the banks of which river?"),
    ("Who painted The Hay Wain?", "Which artist created the painting The Hay Wain?"),
)

_BOUNDARY = re.compile(r"[.!:;]\s+|(?:^|\s)[\"“]")  # a sentence break, a colon, an opening quote
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_WRAPPING = "\"'“”‘’*`_ \t"


def drop_identical_paraphrases(records: Sequence[QARecord]) -> tuple[list[QARecord], int]:
    """(records, how many lost their paraphrase): a paraphrase equal to its question (case, whitespace and
    punctuation aside) is no rephrasing, and is set to None."""
    out, dropped = [], 0
    for record in records:
        paraphrase = record.paraphrased_question
        if paraphrase is not None and normalise(paraphrase) == normalise(record.question):
            record, dropped = replace(record, paraphrased_question=None), dropped + 1
        out.append(record)
    return out, dropped


def rephrase_request(question: str) -> str:
    """The single user message asking for a rephrasing: the instruction, the demonstrations, the question."""
    shots = "\n\n".join(f"Question: {q}\nRewritten: {p}" for q, p in DEMONSTRATIONS)
    return f"{INSTRUCTION}\n\n{shots}\n\nQuestion: {question}\nRewritten:"


def rephrase_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the request, through the chat template where the tokenizer has one (`prompts.question_ids`)."""
    return question_ids(tokenizer, rephrase_request(question))


def required_words(question: str, subject: str | None) -> list[str]:
    """What a paraphrase must keep: the subject, else the question's capitalised words (not function words)."""
    if subject:
        return [subject]
    return [w for w in _WORD.findall(question) if w[0].isupper() and w.lower() not in FUNCTION_WORDS]


def _keeps(text: str, needed: str, subject: bool) -> bool:
    """A subject as a case-insensitive substring; a capitalised word as a whole word (`entities.normalise`)."""
    return needed.lower() in text.lower() if subject else normalise(needed) in normalise(text)


def check_paraphrase(question: str, subject: str | None, generated: str) -> tuple[str | None, str | None]:
    """(paraphrase, None) if `generated` holds an acceptable rephrasing of `question`, else (None, reason).

    The paraphrase is the first line holding a '?', cut after that '?' and after the last sentence break,
    colon or opening quote before it that still leaves every required word (so a preamble such as
    "Sure! Here it is:" goes).
    Reasons: `no_question`, `subject`, `identical`, `too_long`.
    """
    line = next((l for l in generated.splitlines() if "?" in l), None)
    if line is None or not _WORD.search(line[: line.index("?")]):
        return None, "no_question"
    line = line[: line.index("?") + 1]
    needed = required_words(question, subject)
    starts = [0] + [m.end() for m in _BOUNDARY.finditer(line)]
    candidates = [line[s:].strip(_WRAPPING) for s in reversed(starts)]  # shortest first
    kept = next((c for c in candidates if _WORD.search(c) and all(_keeps(c, w, bool(subject)) for w in needed)), None)
    if kept is None:
        return None, "subject"
    if normalise(kept) == normalise(question):
        return None, "identical"
    if len(kept.split()) > MAX_LENGTH_RATIO * len(question.split()):
        return None, "too_long"
    return kept, None


def model_paraphrases(
    model, tokenizer, generate: Generate, records: Sequence[QARecord], *, max_new_tokens: int = 48,
    batch_size: int = 16, cache_dir: str | Path | None = None,
) -> tuple[list[QARecord], dict]:
    """(records, report): records without a paraphrase get one the model writes (greedy, via `generate`), if it
    passes `check_paraphrase`. `report = {"source": "model", "written", "rejected", "reasons": {reason: n}}`."""
    records = list(records)
    todo = [i for i, r in enumerate(records) if not r.paraphrased_question]
    reasons: Counter = Counter()
    if todo:
        questions = list(dict.fromkeys(records[i].question for i in todo))
        prompts = [rephrase_ids(tokenizer, q) for q in questions]
        written = cached_generations(model, tokenizer, generate, "rephrase", questions, prompts, max_new_tokens,
                                     batch_size, cache_dir)
        for i in todo:
            record = records[i]
            paraphrase, reason = check_paraphrase(record.question, record.subject, written[record.question])
            if paraphrase is None:
                reasons[reason] += 1
            else:
                records[i] = replace(record, paraphrased_question=paraphrase)
    rejected = sum(reasons.values())
    return records, {"source": "model", "written": len(todo) - rejected, "rejected": rejected,
                     "reasons": dict(sorted(reasons.items()))}
