"""The choices a claim's verdict rests on (a *reading* of the results), the one the claims chapter takes, and the
reasonable alternatives it checks each verdict against (`robustness`).

The chosen reading, and why:

* each claim's own margin (`claim_tests.CLAIMS`);
* Rouge1 recall, the paper's metric;
* the kept questions of the paper's combined score (`paper_metrics.retain_split`: retain, else neighbour), not
  the independent ones (which the finetuned setting also has);
* cells the study flags as failed edits (`failed_edit` in the result) counted: a failed edit is what the method
  did with the study's hyper-parameters, and leaving it out would judge a method only where it worked;
* the paper's four unlearning baselines, against which the paper makes its claims;
* the original forget questions (the paper's headline score; the rephrased ones are an alternative).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from e2u.errors import E2UError

PAPER_BASELINES = ("gradient_ascent", "gradient_difference", "kl", "dpo")
ALL_BASELINES = (*PAPER_BASELINES, "npo", "simnpo", "idk", "rmu")
EDITORS = ("rome", "memit", "alphaedit", "grace", "wise")
ROUGE = {"rouge1_recall": "Rouge1", "rouge_l_recall": "RougeL"}
KEPT = ("retain", "independent")
FORGET = ("forget", "forget_paraphrased")


@dataclass(frozen=True)
class Reading:
    label: str = "chosen"
    margin: float | None = None  # None: each claim's own margin
    rouge: str = "rouge1_recall"  # the per-item metric of every Rouge score
    kept: str = "retain"  # "retain": paper_metrics.retain_split; "independent": the independent questions where a
    #                       setting has them (else as "retain")
    failed_edits: bool = True  # cells flagged `failed_edit` counted
    baselines: tuple[str, ...] = PAPER_BASELINES  # the unlearning baselines claims 1 and 2 compare against
    forget: str = "forget"  # the forget questions of the combined score: "forget" or "forget_paraphrased"

    def __post_init__(self):
        for field, value, allowed in (("rouge", self.rouge, tuple(ROUGE)), ("kept", self.kept, KEPT),
                                      ("forget", self.forget, FORGET)):
            if value not in allowed:
                raise E2UError(f"reading {self.label!r}: {field} must be one of {list(allowed)}, got {value!r}")
        unknown = [b for b in self.baselines if b not in ALL_BASELINES]
        if unknown or not self.baselines:
            raise E2UError(f"reading {self.label!r}: baselines must be some of {list(ALL_BASELINES)}, got "
                           f"{list(self.baselines)}")

    @property
    def rouge_name(self) -> str:
        return ROUGE[self.rouge]


CHOSEN = Reading()
ALTERNATIVES = (
    replace(CHOSEN, label="margin 0.02", margin=0.02),
    replace(CHOSEN, label="margin 0.05", margin=0.05),
    replace(CHOSEN, label="margin 0.1", margin=0.1),
    replace(CHOSEN, label="RougeL", rouge="rouge_l_recall"),
    replace(CHOSEN, label="independent questions kept", kept="independent"),
    replace(CHOSEN, label="failed edits left out", failed_edits=False),
    replace(CHOSEN, label="all eight baselines", baselines=ALL_BASELINES),
    replace(CHOSEN, label="rephrased forget questions", forget="forget_paraphrased"),
)
