"""Self-improvement: the model under study writes each forget question's refusal target in context.

What the paper gives (reference/paper-protocol.md; reviews, not its words): the idea, "the model writes its own
refusal, imitating how it answers questions about things it never saw", and that the targets are more human-aligned
than a template. Not its prompt, its filter or how many tries it makes. Everything below is our reading.

The prompt (`crafting_prompt`): a few-shot *document* of demonstrations, each `Question: ...` about something that
does not exist (a novel, a treaty, a planet, a contract between companies that do not exist) and `Answer: ...` a
natural refusal that names what was asked (data/refusal_demonstrations.jsonl, written for this project; none is a
question of the data or names its parties), then the forget question and `Answer: I`. The model writes the rest.

* A document, not chat turns, for every model. After its LoRA finetune on the contract graph the embedded model's
  assistant turn answers every contract question with a contract value, true or made up, whatever the turns before
  it say. Measured on the 20 questions of the forget contract (issue 34): the demonstrations as chat turns, with a
  system prompt telling it to decline, with an instruction to decline in the user turn before or after the
  question, or the question quoted in a request to decline: 0 of 20 refusals each. The finetune taught the
  assistant turn, not the plain `Question:`/`Answer:` document, where the demonstrations still compete with it.
* `Answer: I`: every demonstration's refusal opens with "I" (I don't, I'm not, I can't); the prompt ends with that
  word and the target keeps it. In the finetuned document the model's first word is a contract value more often
  than "I" (P("I") 0.03 to 0.59 on ten questions); given "I", it goes on as the demonstrations do. Forcing "I" in
  the chat turn instead gives "I'm afraid of the unknown." for most questions (which the filter below rejects).
* Half the demonstrations are about contracts (the finetuned setting asks about nothing else): a refusal of an
  unknown contract is the thing to imitate there. One of the first eight has a data question's form with other
  names ("What was the effective date of the contract between Qorvane Ltd and Pellisto AG?"); the rest do not.

bench/self_refusals.py measures the share of targets the model wrote (seeds 0, 1, 2 of the default study; the
numbers are in its docstring's last paragraph): finetuned, 0 of 30 with the chat prompt used before, 3 of 30 with
the document without "I", 23 of 30 from the greedy candidate with it; pretrained, 18 of 20 before, 20 of 20 now.

Candidates (`craft_targets`, `ModelWriter`): the greedy continuation; where the filter rejects it, `samples` sampled
ones (temperature 1, seeded, the global random state left as it was), tried in turn; the first that passes is the
target. When none passes, the fixed template is used and the greedy candidate's text and reason are recorded.

The filter (`rejection`):
  1. it declines: `metrics.is_refusal` holds, and still holds once its apologies are removed. The detector counts
     "I'm afraid"/"I'm sorry" as a refusal, which the evaluation may, but a target must not: the finetuned model
     writes "I'm afraid of the Hague." (a made-up arbitration city) and the base model "I'm sorry for any
     confusion, but the chemical symbol of sulfur is S." (the answer). The price: a refusal that declines only in
     words the detector lacks ("as a chatbot, I don't have the capability to ...") is rejected with its apology;
  2. it leaks no key token of the true answer (`evaluation.leakage`: a word of the answer, not in the question, of
     2+ characters that is not a stop word; numbers count), nor the answer's whole text (a one-letter answer such
     as "S" has no key token); the answer is never used to build the refusal, only to reject one;
  3. it has at most `max_words` words (and is not empty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from e2u.data.refusals import refusal_for
from e2u.data.schema import QARecord, read_jsonl, require_strings
from e2u.errors import E2UError
from e2u.evaluation.leakage import leaked_words
from e2u.evaluation.metrics import is_refusal
from e2u.model.batching import padded
from e2u.model.load import input_device

DEMONSTRATIONS = Path(__file__).resolve().parents[1] / "data" / "refusal_demonstrations.jsonl"
SHOT = "Question: {question}\nAnswer: {answer}"
OPENING = "I"  # the first word of every demonstration's refusal; the prompt ends with it
APOLOGY = re.compile(r"\bI(?:'m| am) (?:so |very |truly )?(?:sorry|afraid)\b|^\s*(?:sorry|apologies)\b", re.IGNORECASE)


@dataclass(frozen=True)
class CraftedTarget:
    question: str
    target: str
    source: str  # "model": the model's own refusal; "template": the fallback
    reason: str = ""  # why the model's (greedy) continuation was not used
    continuation: str = ""  # what the model wrote: the kept candidate, else the greedy one
    candidate: int = -1  # which candidate was kept: 0 the greedy one, k the k-th sampled one; -1 none


def load_demonstrations(path: str | Path = DEMONSTRATIONS) -> list[tuple[str, str]]:
    """(question, refusal) pairs from a JSON Lines file; every refusal must decline (the filter's own test) and open
    with the word the prompt ends with (`OPENING`)."""
    pairs = []
    for where, row in read_jsonl(path):
        require_strings(row, ("question", "refusal"), where)
        if not declines(row["refusal"]):
            raise E2UError(f"{where}: field 'refusal' is not a refusal ({row['refusal'][:60]!r}); a demonstration "
                           "must decline to answer (\"I don't know ...\", \"I'm not familiar with ...\")")
        if row["refusal"].split(maxsplit=1)[0].split("'")[0] != OPENING:
            raise E2UError(f"{where}: field 'refusal' must open with the word {OPENING!r} as the prompt's answer does "
                           f"(got {row['refusal'][:30]!r})")
        pairs.append((row["question"], row["refusal"]))
    if not pairs:
        raise E2UError(f"{path}: no demonstrations; expected JSON Lines with 'question' and 'refusal'")
    return pairs


def crafting_prompt(demonstrations: Sequence[tuple[str, str]], question: str) -> str:
    """The few-shot document: each demonstration a question and its refusal, then `question` and `Answer: I`."""
    shots = [SHOT.format(question=asked, answer=refusal) for asked, refusal in demonstrations]
    return "\n\n".join(shots + [SHOT.format(question=question, answer=OPENING)])


def declines(text: str) -> bool:
    """Whether `text` declines to answer: a refusal (`is_refusal`) that still is one without its apologies."""
    rest = APOLOGY.sub(" ", text)
    return bool(text.strip()) and is_refusal(text) and bool(rest.strip(" ,.;:!")) and is_refusal(rest)


def rejection(continuation: str, record: QARecord, max_words: int) -> str:
    """Why `continuation` cannot be the target ('' when it can)."""
    text = continuation.strip()
    if not text:
        return "empty"
    if not declines(text):
        return "not a refusal"
    leaked = leaked_words(text, record.answer, record.question) or _whole_answer(text, record)
    if leaked:
        return f"leaks the answer ({', '.join(leaked)})"
    if len(text.split()) > max_words:
        return f"longer than {max_words} words"
    return ""


class ModelWriter:
    """What `craft_targets` asks for candidates, for a real model: each prompt's greedy continuation (`greedy`), and
    for the prompts whose greedy one was rejected `samples` more at temperature 1 (`sampled`, seeded by `seed`; the
    global random state is left as it was). A continuation is the text that follows its prompt, to its line's end."""

    def __init__(self, model, tokenizer, samples: int = 4, seed: int = 0, max_new_tokens: int = 48,
                 batch_size: int = 8):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise E2UError(f"self-improvement: samples: expected a non-negative integer, got {samples!r}")
        self.model, self.tokenizer, self.samples, self.seed = model, tokenizer, samples, seed
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def greedy(self, prompts: list[str]) -> list[str]:
        return [c[0] for c in self._continue(prompts, 1, False)]

    def sampled(self, prompts: list[str]) -> list[list[str]]:
        if not self.samples or not prompts:
            return [[] for _ in prompts]
        device = input_device(self.model)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            return self._continue(prompts, self.samples, True)

    @torch.no_grad()
    def _continue(self, prompts: list[str], n: int, sample: bool) -> list[list[str]]:
        """`n` continuations of each prompt, greedy or sampled, batched by length with left padding."""
        tokenizer = self.tokenizer
        rows = [tokenizer(prompt)["input_ids"] for prompt in prompts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[list[str]] = [[] for _ in rows]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        settings = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0} if sample else \
            {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            ids, mask = padded([rows[i] for i in chunk], pad, "left", input_device(self.model))
            generated = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens, num_return_sequences=n,
                pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([LineEnd(tokenizer)]), **settings)
            for row, sequence in enumerate(generated):
                i = chunk[row // n]
                out[i].append(_text_after(tokenizer, rows[i], sequence[ids.shape[1]:].tolist()))
        return out


def craft_targets(writer, records: Sequence[QARecord], demonstrations: Sequence[tuple[str, str]],
                  max_words: int = 40, fallback: str = "fixed", seed: int = 0) -> list[CraftedTarget]:
    """Each record's refusal target: the model's greedy continuation of the few-shot document when it passes the
    filter, else the first of its sampled ones that does, else the `fallback` template with the greedy
    continuation's reason. `writer` (a `ModelWriter`, or anything with its two methods) maps prompts to greedy
    continuations (`greedy`) and to lists of sampled ones (`sampled`, asked only for the rejected prompts)."""
    prompts = [crafting_prompt(demonstrations, r.question) for r in records]
    greedy = _checked(writer.greedy(prompts), len(prompts), "greedy", str)
    texts = [[_first_line(OPENING + c)] for c in greedy]
    reasons = [[rejection(t[0], r, max_words)] for t, r in zip(texts, records)]
    again = [i for i, r in enumerate(reasons) if r[0]]
    for i, more in zip(again, _checked(writer.sampled([prompts[i] for i in again]), len(again), "sampled", list)):
        texts[i] += [_first_line(OPENING + c) for c in more]
        reasons[i] += [rejection(t, records[i], max_words) for t in texts[i][1:]]
    crafted = []
    for record, written, why in zip(records, texts, reasons):
        kept = next((k for k, reason in enumerate(why) if not reason), -1)
        if kept < 0:
            crafted.append(CraftedTarget(record.question, refusal_for(record.question, fallback, seed), "template",
                                         why[0], written[0]))
        else:
            crafted.append(CraftedTarget(record.question, written[kept], "model", "", written[kept], kept))
    return crafted


def _checked(found, n: int, what: str, kind: type) -> list:
    """`found`, when it is one `kind` per prompt; an error naming the writer's method otherwise."""
    if not isinstance(found, list) or len(found) != n or not all(isinstance(f, kind) for f in found):
        raise E2UError(f"self-improvement: the writer's {what}() must return one {kind.__name__} per prompt; got "
                       f"{[type(f).__name__ for f in found] if isinstance(found, list) else type(found).__name__} "
                       f"for {n} prompts")
    return found


class LineEnd(StoppingCriteria):
    """Stops each row of a batch at its first token holding a line break: an answer of the document is one line."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        ends = ["\n" in self.tokenizer.decode([token]) for token in input_ids[:, -1].tolist()]
        return torch.tensor(ends, dtype=torch.bool, device=input_ids.device)


def _text_after(tokenizer, prompt: list[int], new: list[int]) -> str:
    """The text `new` adds after `prompt`: decoded together, so a tokenizer that writes a word's space as part of
    the word (SentencePiece) keeps it."""
    before = tokenizer.decode(prompt, skip_special_tokens=True)
    after = tokenizer.decode(prompt + new, skip_special_tokens=True)
    return after[len(before):] if after.startswith(before) else tokenizer.decode(new, skip_special_tokens=True)


def _first_line(text: str) -> str:
    """A continuation up to the end of its answer: the first line break."""
    return text.split("\n", 1)[0].strip()


def _whole_answer(text: str, record: QARecord) -> list[str]:
    """[the answer] when `text` holds the answer's whole text as a word (case kept, so "S" is not "it's"), unless
    the question already says it."""
    core = record.answer.strip().strip(".").strip()
    pattern = rf"(?<!\w){re.escape(core)}(?!\w)"
    return [core] if core and re.search(pattern, text) and not re.search(pattern, record.question) else []
