"""Entailment score (reference/metrics.md 1(c), "Entailment Score").

Closer-look labels each (premise, hypothesis) pair with an NLI classifier
(`sileod/deberta-v3-base-tasksource-nli`, HF `text-classification` with `text` = premise and
`text_pair` = hypothesis), forces the label to `none` where that item's ROUGE-L recall is below 0.1, and
reports the fraction labelled `entailment`.

Which text is the premise:
- TOFU forget, and both real-world sets: the generation (`text = gen, text_pair = gt`);
- TOFU retain, Real Authors, World Facts: the reference (`text = gt, text_pair = gen`).

The model comes from a local directory or the local Hugging Face cache (a hub id; downloads only when asked).
When it cannot be loaded, the score is a `Score` whose value is None and whose reason starts with
"not computed:", never a number made up in its place.

A cell computes entailment only when its `nli_model` parameter names a model (`load_entailment`);
`evaluate.evaluate_dataset(..., entailment=scorer)` then labels every item of every split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from e2u.errors import E2UError
from e2u.evaluation.metrics import ModelUnavailable, Score

log = logging.getLogger(__name__)

DEFAULT_NLI_MODEL = "sileod/deberta-v3-base-tasksource-nli"
ROUGE_FLOOR = 0.1  # below this ROUGE-L recall the label is forced to "none"
Premise = Literal["generation", "reference"]


def closer_look_premise(dataset: str, split: str) -> Premise:
    """Which text closer-look uses as the NLI premise for a split of a dataset ("tofu" or "real_world")."""
    if dataset == "tofu" and not split.startswith("forget"):
        return "reference"
    return "generation"


class EntailmentScorer:
    """A sequence-classification NLI model and its tokenizer; the label names come from `config.id2label`."""
    def __init__(self, model, tokenizer, batch_size: int = 30, max_length: int = 512):
        labels = {str(name).lower() for name in model.config.id2label.values()}
        if "entailment" not in labels:
            raise ModelUnavailable(f"not computed: the NLI model has no 'entailment' label (labels: {sorted(labels)})")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = min(max_length, tokenizer.model_max_length)

    @classmethod
    def load(cls, model: str | Path = DEFAULT_NLI_MODEL, device: str | torch.device | None = None,
             allow_download: bool = False, batch_size: int = 30) -> "EntailmentScorer":
        """Load from a directory or a hub id (local cache only unless `allow_download`); no remote code.

        Raises `ModelUnavailable` ("not computed: ...") when the model cannot be loaded.
        """

        try:
            tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=not allow_download)
            network = AutoModelForSequenceClassification.from_pretrained(
                model, local_files_only=not allow_download, trust_remote_code=False,
            )
        except Exception as error:  # noqa: BLE001 - any load failure becomes the reason, shown to the reader
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelUnavailable(f"not computed: NLI model {str(model)!r} could not be loaded ({reason})") from error
        network.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
        return cls(network, tokenizer, batch_size=batch_size)

    @torch.no_grad()
    def labels(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[str]:
        """The argmax label of each (premise, hypothesis) pair, lower-cased."""
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        device = next(self.model.parameters()).device
        id2label = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        out: list[str] = []
        for start in range(0, len(premises), self.batch_size):
            batch = self.tokenizer(list(premises[start : start + self.batch_size]),
                                   list(hypotheses[start : start + self.batch_size]), padding=True,
                                   truncation=True, max_length=self.max_length, return_tensors="pt").to(device)
            out += [id2label[i] for i in self.model(**batch).logits.argmax(-1).tolist()]
        return out

    def score(self, generations: Sequence[str], references: Sequence[str], rouge_l_recalls: Sequence[float],
              premise: Premise) -> Score:
        """Fraction of items labelled entailment; per_item holds the labels ("none" where ROUGE-L < 0.1)."""
        if not len(generations) == len(references) == len(rouge_l_recalls):
            raise ValueError(f"{len(generations)} generations, {len(references)} references, "
                             f"{len(rouge_l_recalls)} ROUGE values")
        if premise not in ("generation", "reference"):
            raise ValueError(f"premise must be 'generation' or 'reference', not {premise!r}")
        texts, pairs = (generations, references) if premise == "generation" else (references, generations)
        labels = self.labels(texts, pairs)
        labels = ["none" if r < ROUGE_FLOOR else label for label, r in zip(labels, rouge_l_recalls)]
        value = sum(label == "entailment" for label in labels) / len(labels) if labels else float("nan")
        return Score(value, labels)


def entailment_score(generations: Sequence[str], references: Sequence[str], rouge_l_recalls: Sequence[float],
                     premise: Premise, scorer: EntailmentScorer | None = None,
                     model: str | Path = DEFAULT_NLI_MODEL) -> Score:
    """Split-level entailment score with `scorer`, or with `model` loaded here; not computed if it cannot load."""
    if scorer is None:
        try:
            scorer = EntailmentScorer.load(model)
        except ModelUnavailable as error:
            return Score.not_computed(str(error))
    return scorer.score(generations, references, rouge_l_recalls, premise)


def load_entailment(nli_model: str, device: str | torch.device | None = None) -> EntailmentScorer | None:
    """The scorer for the `nli_model` parameter, or None (entailment not computed, a log line says why)
    when it is empty. A name that cannot be loaded is an error naming the parameter, never a silent None."""
    if not isinstance(nli_model, str):
        raise E2UError(f"parameter nli_model: expected a string (a local NLI model directory), got {nli_model!r}")
    if not nli_model.strip():
        log.info("entailment not computed: parameter nli_model is empty (give a local directory with an NLI "
                 "sequence-classification model, e.g. a download of %s)", DEFAULT_NLI_MODEL)
        return None
    where = Path(nli_model).expanduser()
    try:
        return EntailmentScorer.load(where if where.exists() else nli_model, device=device)
    except ModelUnavailable as error:
        reason = str(error).removeprefix("not computed: ")
        raise E2UError(f"parameter nli_model: expected a local directory with an NLI sequence-classification model "
                       f"(its config's id2label naming 'entailment'), got {nli_model!r}: {reason}") from error


def entailment_dataset(splits: dict) -> str:
    """Which closer-look layout the data follows, for the entailment premise: "real_world" when it has a
    `neighbour` split or records with a golden answer (the real-world format), else "tofu"."""
    if any(name == "neighbour" or name.startswith("neighbour_") for name in splits):
        return "real_world"
    return "real_world" if any(r.golden_answer for records in splits.values() for r in records) else "tofu"


def add_entailment(results: dict, scorer, dataset: str) -> None:
    """Label every item of every split with `scorer` (an `EntailmentScorer`), in place.

    The premise per split is closer-look's (`entailment.closer_look_premise`); the label is forced to
    "none" below the ROUGE-L floor. Each item gets `entailment_label` and `entailment` (1.0 when the
    label is "entailment", else 0.0), so a split's mean is closer-look's entailment score.
    """
    for split, items in results.items():
        if not items:
            continue
        score = scorer.score([i["generated"] for i in items], [i["reference"] for i in items],
                             [i["rouge_l_recall"] for i in items], closer_look_premise(dataset, split))
        for item, label in zip(items, score.per_item):
            item["entailment_label"] = label
            item["entailment"] = 1.0 if label == "entailment" else 0.0
