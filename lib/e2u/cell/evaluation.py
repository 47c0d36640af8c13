"""A cell's evaluations: the unedited and the retain model's, cached for every cell of the same model and data,
and what changed between before and after."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from e2u import __version__, cache
from e2u.evaluation.evaluate import evaluate_dataset
from e2u.files import sha256_of_json
from e2u.model.load import load_model, model_fingerprint
from e2u.model.prompts import PromptFormat, format_key, with_prompt_format
from e2u.provenance import code_digest, evaluation_code_files


@dataclass(frozen=True)
class EvaluationSettings:
    """How a model is evaluated on a cell's splits: greedy answers of at most `max_new_tokens`, in batches of
    `batch_size`; the splits also asked in paraphrase (None: every split that has paraphrases); an NLI model."""
    max_new_tokens: int = 32
    batch_size: int = 16
    paraphrased: list | None = None
    nli_model: str = ""

    def evaluate(self, model, tokenizer, splits: dict, entailment=None, embedder="auto") -> dict:
        """Per-item results of `model` on every split (`evaluate.evaluate_dataset`; `embedder`: a loaded
        `SentenceEmbedder`, None for no cosine similarity, "auto" to load one)."""
        return evaluate_dataset(model, tokenizer, splits, self.max_new_tokens, self.batch_size, embedder=embedder,
                                entailment=entailment, paraphrased=self.paraphrased)


def splits_digest(splits: dict) -> str:
    """Hash of every record of every split: what an evaluation of this data depends on."""
    return sha256_of_json({s: [asdict(r) for r in rs] for s, rs in splits.items()})


def evaluate_cached(model, tokenizer, splits, settings: EvaluationSettings, entailment=None, embedder="auto") -> dict:
    """Evaluation of the unedited model, computed once per (model, data, evaluation settings, prompt format, code)."""
    key = {"model": model_fingerprint(model), "data": splits_digest(splits), "max_new_tokens": settings.max_new_tokens,
           "batch_size": settings.batch_size, "nli_model": settings.nli_model, "version": __version__,
           **({"paraphrased": settings.paraphrased} if settings.paraphrased is not None else {}),
           "code": code_digest(evaluation_code_files()), **format_key(tokenizer)}
    return cache.cached_json(cache.entry_path("evals", key), key,
                             lambda: settings.evaluate(model, tokenizer, splits, entailment, embedder))


def evaluate_retain_model(path: str, device: str | None, dtype: str | None, splits: dict,
                          settings: EvaluationSettings, entailment=None, prompt: PromptFormat | None = None,
                          embedder="auto") -> dict:
    """Per-item results of the retain model at `path` on the cell's data, its questions rendered with `prompt`
    (cached like any unedited model's)."""
    model, tokenizer = load_model(path, device, dtype)
    with_prompt_format(tokenizer, prompt)
    return evaluate_cached(model, tokenizer, splits, settings, entailment, embedder)


def model_cache(fingerprint: str, tokenizer=None):
    """The on-disk cache a cell's method shares with every cell of the same model (`UnlearningProblem.cache`):
    its entries are keyed by the unedited model's fingerprint, the library version, the evaluation code and
    `tokenizer`'s prompt format (`prompts.format_key`)."""
    code, rendering = code_digest(evaluation_code_files()), format_key(tokenizer)

    def cached(kind: str, key: dict, compute):
        full = {"model": fingerprint, **key, "version": __version__, "code": code, **rendering}
        return cache.cached_json(cache.entry_path(kind, full), full, compute)

    return cached


def mark_unchanged(before: dict, after: dict) -> None:
    """Flag every after-item whose greedy answer equals the unedited model's, word for word."""
    for split, items in after.items():
        for item, old in zip(items, before.get(split, [])):
            item["unchanged"] = " ".join(item["generated"].split()) == " ".join(old["generated"].split())


def unchanged_rates(after: dict) -> dict:
    return {split: sum(i["unchanged"] for i in items) / len(items) for split, items in after.items() if items}
