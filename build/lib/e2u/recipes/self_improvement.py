"""Self-improvement: the model under study writes each forget question's refusal target in context.

Ours (the paper gives the idea, "the model writes its own refusal, imitating how it answers questions about
things it never saw", not the prompt): a few-shot prompt of demonstrations — questions about entities that
do not exist, each answered by a natural refusal that names what was asked (data/refusal_demonstrations.jsonl,
written for this project) — followed by the forget question; the model's greedy continuation is kept as the
target when it passes three filters, else the fixed template is used and the reason recorded:

  1. it is a refusal (metrics.is_refusal);
  2. it leaks no key token of the true answer (a word of the answer, not in the question, of 2+ characters
     that is not a stop word; numbers count);
  3. it has at most `max_words` words (and is not empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord, read_jsonl, require_strings
from e2u.errors import E2UError
from e2u.evaluation.evaluate import generate_answers
from e2u.evaluation.leakage import leaked_words
from e2u.evaluation.metrics import is_refusal
from e2u.model.prompts import encode_prompt, has_chat_template

DEMONSTRATIONS = Path(__file__).resolve().parents[1] / "data" / "refusal_demonstrations.jsonl"


@dataclass(frozen=True)
class CraftedTarget:
    question: str
    target: str
    source: str  # "model": the model's own refusal; "template": the fallback
    reason: str = ""  # why the model's continuation was not used
    continuation: str = ""  # what the model wrote


def load_demonstrations(path: str | Path = DEMONSTRATIONS) -> list[tuple[str, str]]:
    """(question, refusal) pairs from a JSON Lines file; every refusal must read as one (is_refusal)."""
    pairs = []
    for where, row in read_jsonl(path):
        require_strings(row, ("question", "refusal"), where)
        if not is_refusal(row["refusal"]):
            raise E2UError(f"{where}: field 'refusal' is not a refusal ({row['refusal'][:60]!r}); a demonstration "
                           "must decline to answer (\"I don't know ...\", \"I'm not familiar with ...\")")
        pairs.append((row["question"], row["refusal"]))
    if not pairs:
        raise E2UError(f"{path}: no demonstrations; expected JSON Lines with 'question' and 'refusal'")
    return pairs


def crafting_prompt(tokenizer, demonstrations: Sequence[tuple[str, str]], question: str) -> str:
    """The few-shot prompt: each demonstration a user turn and its refusal the assistant's, then the question."""
    if has_chat_template(tokenizer):
        turns = []
        for asked, refusal in demonstrations:
            turns += [{"role": "user", "content": asked}, {"role": "assistant", "content": refusal}]
        turns.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    shots = "".join(f"Question: {asked}\nAnswer: {refusal}\n\n" for asked, refusal in demonstrations)
    return f"{shots}Question: {question}\nAnswer:"


def rejection(continuation: str, record: QARecord, max_words: int) -> str:
    """Why `continuation` cannot be the target ('' when it can)."""
    text = continuation.strip()
    if not text:
        return "empty"
    if not is_refusal(text):
        return "not a refusal"
    leaked = leaked_words(text, record.answer, record.question)
    if leaked:
        return f"leaks the answer ({', '.join(leaked)})"
    if len(text.split()) > max_words:
        return f"longer than {max_words} words"
    return ""


def greedy_continuations(model, tokenizer, max_new_tokens: int = 48, batch_size: int = 8
                         ) -> Callable[[list[str]], list[str]]:
    """The generation function `craft_targets` takes, for a real model: greedy, batched."""
    def generate(prompts: list[str]) -> list[str]:
        ids = [encode_prompt(tokenizer, prompt) for prompt in prompts]
        return generate_answers(model, tokenizer, ids, max_new_tokens, batch_size)
    return generate


def craft_targets(generate: Callable[[list[str]], list[str]], tokenizer, records: Sequence[QARecord],
                  demonstrations: Sequence[tuple[str, str]], max_words: int = 40,
                  fallback: str = "fixed", seed: int = 0) -> list[CraftedTarget]:
    """Each record's refusal target: the model's continuation of the few-shot prompt (`generate` maps
    prompts to continuations, greedy) when it passes the filters, else the `fallback` template."""
    continuations = generate([crafting_prompt(tokenizer, demonstrations, r.question) for r in records])
    if len(continuations) != len(records):
        raise E2UError(f"self-improvement: the generation function returned {len(continuations)} continuations "
                       f"for {len(records)} prompts")
    crafted = []
    for record, continuation in zip(records, continuations):
        text = _first_turn(continuation)
        reason = rejection(text, record, max_words)
        if reason:
            crafted.append(CraftedTarget(record.question, refusal_for(record.question, fallback, seed), "template",
                                         reason, text))
        else:
            crafted.append(CraftedTarget(record.question, text, "model", "", text))
    return crafted


def _first_turn(continuation: str) -> str:
    """The continuation up to the end of the answer's turn: the first blank line or next question."""
    text = continuation.strip()
    for stop in ("\n\n", "\nQuestion:", "\nUser:"):
        text = text.split(stop, 1)[0]
    return text.strip()
