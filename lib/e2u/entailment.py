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
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import torch

from .metrics import ModelUnavailable, Score

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
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
