"""A cell's data: read or generated, cut to what the model knows, and each forget question rephrased.

* `probe` and `factual` ask the model under study and keep only what it answers correctly (the
  precondition of unlearning pretrained knowledge: a fact never known cannot be forgotten);
* the rephrase attack (paper section 4; reference/paper-protocol.md) asks every forget question again in other
  words: the data's own paraphrase where it has one (a paraphrase equal to its question is dropped and
  counted), else one the model under study writes from a few-shot prompt (`data.rephrase.model_paraphrases`,
  filtered and cached). The result file records how many came from where (`data_report`).
"""

from __future__ import annotations

from .data.sources import NEEDS_THE_MODEL, load_source
from .evaluate import generate_answers


def load_splits(model, tokenizer, params) -> dict:
    """The cell's splits (`{name: [QARecord]}`), with the forget questions' paraphrases in place."""
    return load_splits_with_report(model, tokenizer, params)[0]


def load_splits_with_report(model, tokenizer, params) -> tuple[dict, dict]:
    """(splits, report): the report says what the model knew and where each rephrased question came from."""
    report: dict = {}
    if params.data_source in NEEDS_THE_MODEL:
        splits = _known_splits(model, tokenizer, params, report)
    else:
        splits = load_source(params.data_source, params.data_path or None, params.data_options)
    if splits.get("forget"):
        splits, report["paraphrases"] = _rephrased(model, tokenizer, splits, params)
    return splits, report


def _known_splits(model, tokenizer, params, report: dict) -> dict:
    if params.data_source == "probe":
        from .data.probe import probe_splits

        return probe_splits(model, tokenizer, generate_answers, **params.data_options)
    from .data.factual import factual_splits

    splits = factual_splits(model, tokenizer, generate_answers, path=params.data_path or None, **params.data_options)
    report["known"] = getattr(splits, "report", None) or {}
    return dict(splits)


def _rephrased(model, tokenizer, splits: dict, params) -> tuple[dict, dict]:
    """Identical paraphrases dropped in every split; the forget questions without one rephrased by the model."""
    from .data.rephrase import drop_identical_paraphrases, model_paraphrases

    dropped = {}
    for name in list(splits):
        splits[name], dropped[name] = drop_identical_paraphrases(list(splits[name]))
    forget = list(splits["forget"])
    from_data = sum(r.paraphrased_question is not None for r in forget)
    written: dict = {"source": "model", "written": 0, "rejected": 0, "reasons": {}}
    if from_data < len(forget):
        forget, written = model_paraphrases(model, tokenizer, generate_answers, forget,
                                            batch_size=max(1, params.batch_size))
    splits["forget"] = forget
    return splits, {"from_data": from_data, "written_by_model": written,
                    "dropped_identical": {k: v for k, v in dropped.items() if v},
                    "without_paraphrase": sum(r.paraphrased_question is None for r in forget)}
