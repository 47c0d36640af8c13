"""Text corpora for the key statistics C = E[k k^T], offline.

The reference implementations use Wikipedia. Offline, the embedded default combines two sources,
and every run records which it used:

* `model_samples`: text sampled from the model itself (half plain continuations, half chat answers);
* `question_bank`: chat-rendered questions about a fixed list of entities (countries, cities,
  people, works, companies, inventions), written for this project and disjoint from the evaluation
  data. These are the inputs an unlearning edit is keyed on — a question naming an entity — so
  C knows which key directions every such question shares, and ROME's C^-1 steers updates away
  from them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from tqdm import tqdm  # plain tqdm: silent when stderr is not a terminal (papermill, CI)

from e2u import cache
from e2u.errors import E2UError
from e2u.model.batching import padded
from e2u.model.load import input_device, require_own_statistics, statistics_fingerprint
from e2u.model.prompts import format_key, render_question

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    """Texts to collect statistics on; `name` says where they came from (recorded in the book)."""
    name: str
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\x00".join(self.texts).encode()).hexdigest()[:16]

    def __add__(self, other: "Corpus") -> "Corpus":
        return Corpus(f"{self.name} + {other.name}", self.texts + other.texts)


_SAMPLE_PROMPTS = (
    "The", "In 1990,", "According to", "Scientists", "The history of", "Many people", "A recipe for",
    "The city of", "Music", "Football", "The government", "Technology", "Question:", "My favourite book",
    "Water", "The war",
)

# Entities and question forms for the question bank. None of these entities appears in the
# embedded evaluation set (lib/e2u/data/mini.jsonl); a test checks this.
_BANK_ENTITIES = (
    "Canada", "Mexico", "Egypt", "Norway", "Sweden", "Poland", "Greece", "Chile", "Vietnam", "Thailand",
    "Nigeria", "Morocco", "Ireland", "Portugal", "Spain", "China", "Russia", "Australia", "Iceland", "Cuba",
    "London", "Madrid", "Cairo", "Sydney", "Toronto", "Istanbul", "Lisbon", "Prague", "Chicago", "Mumbai",
    "Charles Dickens", "Isaac Newton", "Marie Curie", "Napoleon", "Cleopatra", "Mozart", "Picasso",
    "Nelson Mandela", "Abraham Lincoln", "Frida Kahlo", "Don Quixote", "Pride and Prejudice", "The Odyssey",
    "Moby Dick", "the Eiffel Tower", "the Great Wall", "the Amazon River", "Mount Everest", "the Sahara",
    "Amazon", "Google", "Toyota", "IBM", "Nokia", "the printing press", "the light bulb", "the airplane",
    "the steam engine", "the internet", "vaccination",
)
_BANK_FORMS = (
    "What is {} known for?", "Tell me about {}.", "Where is {} located?", "Who is associated with {}?",
    "What is the history of {}?", "Why is {} important?", "When did {} become famous?",
    "What are three facts about {}?",
)


def question_bank_corpus(tokenizer) -> Corpus:

    texts = tuple(render_question(tokenizer, form.format(e)) for e in _BANK_ENTITIES for form in _BANK_FORMS)
    return Corpus(f"question bank ({len(texts)} chat-rendered questions)", texts)


@torch.no_grad()
def model_samples_corpus(model, tokenizer, n_texts: int = 64, length: int = 128, seed: int = 0) -> Corpus:
    """Text sampled from the model itself, cached under `$E2U_HOME/corpora/` (keyed by the model's fingerprint and
    the tokenizer's prompt format)."""
    name = f"model samples ({n_texts} x {length} tokens, seed {seed})"
    key = {"model": statistics_fingerprint(model), "n_texts": n_texts, "length": length, "seed": seed,
           "prompts": _SAMPLE_PROMPTS, **format_key(tokenizer)}  # half of the samples answer rendered questions

    def sample():
        require_own_statistics(model, "the statistics corpus's samples")
        return _sample_texts(model, tokenizer, n_texts, length, seed)

    texts = cache.cached_json(cache.entry_path("corpora", key), key, sample)
    return Corpus(name, tuple(texts))


def _sample_texts(model, tokenizer, n_texts: int, length: int, seed: int) -> list[str]:
    """Half plain continuations of `_SAMPLE_PROMPTS`, half chat answers about them (top-k 50, seeded)."""


    device = input_device(model)
    prompts = []
    for i in range(n_texts):
        seed_text = _SAMPLE_PROMPTS[i % len(_SAMPLE_PROMPTS)]
        prompts.append(render_question(tokenizer, f"Tell me about {seed_text.lower().rstrip(':,')}.") if i % 2 else seed_text)
    texts = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in tqdm(range(0, n_texts, 64), desc="sample corpus", leave=False, disable=None):
            rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start : start + 64]]
            ids, mask = padded(rows, tokenizer.pad_token_id, "left", device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=length,
                                 do_sample=True, top_k=50, pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out, skip_special_tokens=False)
    return [t.replace(tokenizer.pad_token, "") if tokenizer.pad_token else t for t in texts]


def statistics_corpus(model, tokenizer, kind: str, n_texts: int, seed: int) -> Corpus:
    """The corpus named by a method's `mom2_corpus` hyper-parameter:

    * `model_samples`, `question_bank`, or `model_samples+question_bank` (the offline default);
    * `file:<path>`: a local text file, one document per blank-line-separated paragraph;
    * `hub:<dataset>[@<config>]`: the `text` column of a hub data set's train split, e.g.
      `hub:Salesforce/wikitext@wikitext-103-raw-v1` (the reference code uses Wikipedia), when online.
    """
    if kind == "model_samples":
        return model_samples_corpus(model, tokenizer, n_texts=n_texts, seed=seed)
    if kind == "question_bank":
        return question_bank_corpus(tokenizer)
    if kind == "model_samples+question_bank":
        return model_samples_corpus(model, tokenizer, n_texts=n_texts, seed=seed) + question_bank_corpus(tokenizer)
    if kind.startswith("file:"):
        return text_file_corpus(kind[len("file:"):])
    if kind.startswith("hub:"):
        return hub_corpus(kind[len("hub:"):])
    raise E2UError(f"hyper-parameter mom2_corpus: expected model_samples, question_bank, "
                   f"model_samples+question_bank, file:<path> or hub:<dataset>[@<config>], got {kind!r}")


def text_file_corpus(path) -> Corpus:
    """A local text file, one document per blank-line-separated paragraph."""


    path = Path(path).expanduser()
    if not path.is_file():
        raise E2UError(f"hyper-parameter mom2_corpus: text file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    texts = tuple(p.strip() for p in text.split("\n\n") if p.strip())
    if not texts:
        raise E2UError(f"hyper-parameter mom2_corpus: text file {path} is empty")
    return Corpus(f"text file {path.name} ({hashlib.sha256(text.encode()).hexdigest()[:8]})", texts)


def hub_corpus(spec: str, max_documents: int = 20_000) -> Corpus:
    """Non-empty `text` rows of a hub data set's train split (streamed, at most `max_documents`)."""
    name, _, config = spec.partition("@")
    try:
        rows = datasets.load_dataset(name, config or None, split="train", streaming=True)
        texts = []
        for row in rows:
            text = (row.get("text") or "").strip()
            if text:
                texts.append(text)
            if len(texts) >= max_documents:
                break
    except Exception as exc:  # offline, unknown data set, no `text` column
        raise E2UError(f"hyper-parameter mom2_corpus: could not read hub data set {spec!r} "
                       f"({type(exc).__name__}); offline, use file:<path> or the default") from None
    return Corpus(f"hub {spec} ({len(texts)} documents)", tuple(texts))
