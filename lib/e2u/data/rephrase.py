"""The rephrase attack's questions: each forget question asked again in other words.

The paper attacks unlearning with rephrased forget questions, but neither PISTOL nor TOFU's factual sets carry
paraphrases, so the paper wrote its own, how is not known (reference/paper-protocol.md). Here each forget
question gets its paraphrase from the first of three places that gives one (`rephrase_forget`):

1. **data**: the record's own `paraphrased_question`, unless it equals the question
   (`drop_identical_paraphrases`);
2. **model**: the model under study rewrites it (`model_paraphrases`): the demonstrations as earlier turns of a
   chat (a small chat model copies a demonstration, answers the question or repeats it when all of them share
   one message; the plain and own-template formats, which have no turns, still get one message), greedy;
3. **rules**: a rewrite of the question's frame that copies the rest verbatim (`paraphrase_rules`: "Who wrote
   'Emma'?" -> "Who is the author of 'Emma'?"; any wh-question -> "Can you tell me who ...?").

The model's and the rules' rewrites are kept only if they pass `check_paraphrase`: one question ending in
'?', a new sentence (not the question again, case, spacing and punctuation aside), keeping every name of the
question (its subject, quoted titles, numbers and capitalised words: `required_words`), adding no name it does
not have, and not much longer; the model's must also ask for the same kind of thing (`answer_type_kept`: "What
is the capital of France?" is not "Which country is the capital of France?"). A record that ends without a
paraphrase is never silent: the report names it with the reason each place gave, and when any forget question
is left without one the report carries a `note`, which is also logged as a warning; with none at all, the
rephrase attack is not measured in that cell.

Generations are cached under `$E2U_HOME/rephrase/` (`probe.cached_generations`: keyed by the model
fingerprint, the rendered prompts and the generation length).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from e2u.data.entities import normalise
from e2u.data.paraphrase_rules import rule_paraphrase
from e2u.data.probe import Generate, cached_generations
from e2u.data.schema import QARecord
from e2u.data.tofu import FUNCTION_WORDS, quoted_spans
from e2u.model.prompts import encode_prompt, question_ids, render_conversation

log = logging.getLogger(__name__)

MAX_LENGTH_RATIO = 2.5  # a rewrite may be this many times as long as its question (in words) ...
MAX_EXTRA_WORDS = 6  # ... or this many words longer, whichever is more ("Who is X?" -> "Can you tell me who is X?")
SOURCES = ("data", "model", "rules")  # where a paraphrase comes from, in the order they are asked

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
# Imperative openers whose capital is the sentence's, not a name's ("Name the author of ...").
OPENERS = frozenset("name list identify tell give describe explain state please".split())

_BOUNDARY = re.compile(r"[.!:;]\s+|(?:^|\s)[\"“]")  # a sentence break, a colon, an opening quote
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_POSSESSIVE = re.compile(r"['’]s$")
_WRAPPING = "\"'“”‘’*`_ \t"
_ANSWER_TYPE = re.compile(r"(?:which|what)\s+(?P<noun>[^\W\d_]+)\b", re.IGNORECASE)


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


# --- the model's rewrite -------------------------------------------------------------------------

def _ask(question: str) -> str:
    return f"{INSTRUCTION}\nQuestion: {question}"


def rephrase_turns() -> list[tuple[str, str]]:
    """The demonstrations as (user, assistant) exchanges of a chat, each asked as the question will be."""
    return [(_ask(q), p) for q, p in DEMONSTRATIONS]


def rephrase_request(question: str) -> str:
    """The single message asking for a rephrasing where there are no chat turns (a plain or own-template prompt
    format): the instruction, the demonstrations, the question."""
    shots = "\n\n".join(f"Question: {q}\nRewritten: {p}" for q, p in DEMONSTRATIONS)
    return f"{INSTRUCTION}\n\n{shots}\n\nQuestion: {question}\nRewritten:"


def rephrase_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the request: the demonstrations as earlier chat turns where questions go through the chat
    template (`prompts.render_conversation`), else one message (`rephrase_request`, `prompts.question_ids`)."""
    text = render_conversation(tokenizer, rephrase_turns(), _ask(question))
    return question_ids(tokenizer, rephrase_request(question)) if text is None else encode_prompt(tokenizer, text)


# --- the check -----------------------------------------------------------------------------------

def _name_words(text: str, skip_first: bool) -> list[str]:
    """Capitalised words that are not function words, a possessive "'s" dropped; the first word left out when
    `skip_first` (a sentence's capital), else only when it is an imperative opener."""
    words = [_POSSESSIVE.sub("", w.rstrip("'’-")) for w in _WORD.findall(text)]
    first = 1 if words and (skip_first or words[0].lower() in OPENERS) else 0
    return [w for w in words[first:] if w[0].isupper() and w.lower() not in FUNCTION_WORDS]


def required_words(question: str, subject: str | None) -> list[str]:
    """What a paraphrase must keep, each as whole words (case, accents and punctuation aside): the subject, the
    quoted titles, the numbers and the capitalised words that are not function words, without repeats."""
    needed = ([subject] if subject else []) + quoted_spans(question) + _NUMBER.findall(question)
    needed += _name_words(question, skip_first=False)
    return [w for w in dict.fromkeys(needed) if normalise(w).strip()]


def _has(text: str, needed: str) -> bool:
    return normalise(needed) in normalise(text)


def check_paraphrase(question: str, subject: str | None, generated: str) -> tuple[str | None, str | None]:
    """(paraphrase, None) if `generated` holds an acceptable rephrasing of `question`, else (None, reason).

    The paraphrase is the first line holding a '?', cut after that '?' and after the last sentence break,
    colon or opening quote before it that still leaves every required word (so a preamble such as
    "Sure! Here it is:" goes).
    Reasons: `no_question`, `names` (a required word is missing, or a quoted title survives only inside a longer
    quoted one), `new_name` (it names something the question does not), `identical`, `too_long`.
    """
    line = next((l for l in generated.splitlines() if "?" in l), None)
    if line is None or not _WORD.search(line[: line.index("?")]):
        return None, "no_question"
    line = line[: line.index("?") + 1]
    needed = required_words(question, subject)
    starts = [0] + [m.end() for m in _BOUNDARY.finditer(line)]
    candidates = [line[s:].strip(_WRAPPING) for s in reversed(starts)]  # shortest first
    kept = next((c for c in candidates if _WORD.search(c) and all(_has(c, w) for w in needed)), None)
    if kept is None:
        return None, "names"
    if any(not _has(question, w) for w in _name_words(kept, skip_first=True)):
        return None, "new_name"
    titles = {normalise(t) for t in quoted_spans(kept)}
    if titles and any(normalise(t) not in titles for t in quoted_spans(question)):
        return None, "names"  # a title kept only inside a longer quoted one: 'The Sea of the Old Man and the Sea'
    if normalise(kept) == normalise(question):
        return None, "identical"
    words = len(question.split())
    if len(kept.split()) > max(MAX_LENGTH_RATIO * words, words + MAX_EXTRA_WORDS):
        return None, "too_long"
    return kept, None


def answer_type_kept(question: str, paraphrase: str) -> bool:
    """Whether a paraphrase opening "Which <noun>" or "What <noun>" asks for a thing the question names: "What is
    the capital of France?" -> "Which country is the capital of France?" asks for another answer. A plural "s"
    aside; a paraphrase opening otherwise passes, and so does any of a question asking "Who". Applied to the
    model's rewrites, whose meaning nothing else checks (the rules' frames are written to keep it: "Which city
    serves as the capital of ...")."""
    match = _ANSWER_TYPE.match(paraphrase.strip(_WRAPPING))
    if not match or match["noun"].lower() in FUNCTION_WORDS or question.split()[0].lower() in ("who", "whom", "whose"):
        return True  # "Who wrote Emma?" -> "Which novelist wrote Emma?": a person either way
    noun = match["noun"].lower()
    asked = set(normalise(question).split())
    return noun in asked or noun.rstrip("s") in asked or f"{noun}s" in asked


# --- the three places ----------------------------------------------------------------------------

def _model_checked(model, tokenizer, generate: Generate, records: Sequence[QARecord], max_new_tokens: int,
                   batch_size: int, cache_dir) -> list[tuple[str | None, str | None]]:
    """(paraphrase or None, reason or None) for each record, from the model's greedy rewrite."""
    questions = list(dict.fromkeys(r.question for r in records))
    if not questions:
        return []
    prompts = [rephrase_ids(tokenizer, q) for q in questions]
    written = cached_generations(model, tokenizer, generate, "rephrase", questions, prompts, max_new_tokens,
                                 batch_size, cache_dir)
    checked = [check_paraphrase(r.question, r.subject, written[r.question]) for r in records]
    return [(None, "answer_type") if paraphrase is not None and not answer_type_kept(r.question, paraphrase)
            else (paraphrase, reason) for r, (paraphrase, reason) in zip(records, checked)]


def _report(source: str, checked: Sequence[tuple[str | None, str | None]], **extra) -> dict:
    reasons = Counter(reason for paraphrase, reason in checked if paraphrase is None)
    rejected = sum(reasons.values())
    return {"source": source, "written": len(checked) - rejected, "rejected": rejected,
            "reasons": dict(sorted(reasons.items())), **extra}


def _filled(records: list[QARecord], todo: Sequence[int], checked) -> list[QARecord]:
    """`records` with the accepted paraphrase of each record `todo[k]` (`checked[k]`) in place."""
    out = list(records)
    for i, (paraphrase, _) in zip(todo, checked):
        if paraphrase is not None:
            out[i] = replace(out[i], paraphrased_question=paraphrase)
    return out


def _without(records: Sequence[QARecord]) -> list[int]:
    return [i for i, r in enumerate(records) if not r.paraphrased_question]


def _by_model(model, tokenizer, generate: Generate, records: list[QARecord], max_new_tokens: int, batch_size: int,
              cache_dir) -> tuple[list[QARecord], dict, dict[str, str]]:
    """(records, report, {question: reason} of the rejected)."""
    todo = _without(records)
    checked = _model_checked(model, tokenizer, generate, [records[i] for i in todo], max_new_tokens, batch_size,
                             cache_dir)
    rejected = {records[i].question: reason for i, (paraphrase, reason) in zip(todo, checked) if paraphrase is None}
    return _filled(records, todo, checked), _report("model", checked), rejected


def _by_rules(records: list[QARecord]) -> tuple[list[QARecord], dict, dict[str, str]]:
    """(records, report, {question: reason} of the rejected); a question no rule fits: `no_rule`."""
    todo = _without(records)
    checked, used = [], Counter()
    for i in todo:
        rewritten, rule = rule_paraphrase(records[i].question)
        result = (None, rule) if rewritten is None else check_paraphrase(records[i].question, records[i].subject,
                                                                            rewritten)
        checked.append(result)
        used[rule] += result[0] is not None
    rejected = {records[i].question: reason for i, (paraphrase, reason) in zip(todo, checked) if paraphrase is None}
    report = _report("rules", checked, rules={rule: n for rule, n in sorted(used.items()) if n})
    return _filled(records, todo, checked), report, rejected


def model_paraphrases(
    model, tokenizer, generate: Generate, records: Sequence[QARecord], *, max_new_tokens: int = 48,
    batch_size: int = 16, cache_dir: str | Path | None = None,
) -> tuple[list[QARecord], dict]:
    """(records, report): records without a paraphrase get one the model writes (greedy, via `generate`), if it
    passes `check_paraphrase`. `report = {"source": "model", "written", "rejected", "reasons": {reason: n}}`."""
    records, report, _ = _by_model(model, tokenizer, generate, list(records), max_new_tokens, batch_size, cache_dir)
    return records, report


def rule_paraphrases(records: Sequence[QARecord]) -> tuple[list[QARecord], dict]:
    """(records, report): records without a paraphrase get the rules' rewrite (`paraphrase_rules`), if it passes
    `check_paraphrase`. `report = {"source": "rules", "written", "rejected", "reasons", "rules": {rule: n}}`;
    a question no rule fits is rejected for `no_rule`."""
    records, report, _ = _by_rules(list(records))
    return records, report


def rephrase_forget(
    model, tokenizer, generate: Generate | None, records: Sequence[QARecord], *, max_new_tokens: int = 48,
    batch_size: int = 16, cache_dir: str | Path | None = None,
) -> tuple[list[QARecord], dict]:
    """(records, report): every record given a paraphrase from the data, else the model (`generate`; None
    skips it), else the rules; what is left without one is named with each place's reason.

    `report`: `forget` (records), `with_paraphrase`, `by_source` ({data, model, rules}: how many from each),
    `from_data`, `written_by_model` and `written_by_rules` (the two reports), `without_paraphrase`, `missing`
    ([{question, model, rules}]: the reason each gave) and, when any record is left without one, `note`, which
    is also logged as a warning.
    """
    records = list(records)
    from_data = len(records) - len(_without(records))
    if generate is None:
        by_model, model_reasons = {"source": "model", "written": 0, "rejected": 0, "reasons": {}, "skipped": True}, {}
    else:
        records, by_model, model_reasons = _by_model(model, tokenizer, generate, records, max_new_tokens, batch_size,
                                                     cache_dir)
    records, by_rules, rule_reasons = _by_rules(records)
    missing = [{"question": records[i].question, "model": model_reasons.get(records[i].question, "not asked"),
                "rules": rule_reasons[records[i].question]} for i in _without(records)]
    report = {"forget": len(records), "with_paraphrase": len(records) - len(missing),
              "by_source": {"data": from_data, "model": by_model["written"], "rules": by_rules["written"]},
              "from_data": from_data, "written_by_model": by_model, "written_by_rules": by_rules,
              "without_paraphrase": len(missing), "missing": missing}
    if missing:
        report["note"] = missing_note(report)
        log.warning("%s", report["note"])
    return records, report


def missing_note(report: dict) -> str:
    """The sentence a result carries when forget questions are left without a paraphrase, with the reasons."""
    reasons = Counter(f"model: {m['model']}, rules: {m['rules']}" for m in report["missing"])
    why = "; ".join(f"{n} x ({reason})" for reason, n in sorted(reasons.items()))
    n, left = report["forget"], report["without_paraphrase"]
    if left == n:
        return (f"the rephrase attack was not run: none of the {n} forget questions has a paraphrase (the data "
                f"gives none; {why}), so no rephrased Rouge1 or combined score (rephrased) is measured")
    return (f"{left} of {n} forget questions have no paraphrase ({why}); the rephrase attack is measured on the "
            f"other {n - left}")
