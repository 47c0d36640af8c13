"""A cell's data: read or generated, cut to what the model knows, and each forget question rephrased.

* `probe` and `factual` ask the model under study and keep only what it answers correctly (the
  precondition of unlearning pretrained knowledge: a fact never known cannot be forgotten);
* the rephrase attack (paper section 4; reference/paper-protocol.md) asks every forget question again in other
  words: the data's own paraphrase where it has one (a paraphrase equal to its question is dropped and
  counted), else one the model under study writes from a few-shot prompt, else one written by rules
  (`data.rephrase.rephrase_forget`, each checked, the model's cached). The result file records how many came
  from where, names the questions left without one with the reasons, and carries a `note` (also a logged
  warning) when any is left: with none, the rephrase attack is not measured (`data_report["paraphrases"]`).
"""

from __future__ import annotations

from e2u.data.factual import factual_splits
from e2u.data.probe import probe_splits
from e2u.data.rephrase import drop_identical_paraphrases, rephrase_forget
from e2u.data.sources import NEEDS_THE_MODEL, load_source
from e2u.evaluation.evaluate import generate_answers


def load_splits(model, tokenizer, source: str, path: str | None, options: dict, batch_size: int) -> dict:
    """The cell's splits (`{name: [QARecord]}`), with the forget questions' paraphrases in place."""
    return load_splits_with_report(model, tokenizer, source, path, options, batch_size)[0]


def load_splits_with_report(model, tokenizer, source: str, path: str | None, options: dict,
                            batch_size: int) -> tuple[dict, dict]:
    """(splits, report) of data `source` (read from `path` where given, with its `options`): the report says
    what the model knew and where each rephrased question came from (`batch_size`: the model's rephrasing)."""
    report: dict = {}
    if source in NEEDS_THE_MODEL:
        splits = _known_splits(model, tokenizer, source, path, options, report)
    else:
        splits = load_source(source, path, options)
    if splits.get("forget"):
        splits, report["paraphrases"] = _rephrased(model, tokenizer, splits, batch_size)
    return splits, report


def _known_splits(model, tokenizer, source: str, path: str | None, options: dict, report: dict) -> dict:
    if source == "probe":
        return probe_splits(model, tokenizer, generate_answers, **options)
    splits = factual_splits(model, tokenizer, generate_answers, path=path, **options)
    report["known"] = getattr(splits, "report", None) or {}
    return dict(splits)


def _rephrased(model, tokenizer, splits: dict, batch_size: int) -> tuple[dict, dict]:
    """Identical paraphrases dropped in every split; each forget question without one rephrased by the model,
    else by rules (`rephrase.rephrase_forget`: a question left without one is named, with a `note`)."""
    dropped = {}
    for name in list(splits):
        splits[name], dropped[name] = drop_identical_paraphrases(list(splits[name]))
    splits["forget"], report = rephrase_forget(model, tokenizer, generate_answers, list(splits["forget"]),
                                               batch_size=max(1, batch_size))
    return splits, {**report, "dropped_identical": {k: v for k, v in dropped.items() if v}}
