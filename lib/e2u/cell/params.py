"""A cell's parameters: everything a cell depends on, checked as the notebook receives them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from e2u.cell.evaluation import EvaluationSettings
from e2u.cell.json_fields import from_json_object
from e2u.data.sources import source_options
from e2u.errors import E2UError
from e2u.methods import get_method
from e2u.model.prompts import PromptFormat, prompt_format


@dataclass
class CellParams:
    """Everything a cell depends on. Notebook parameters are validated into this."""
    model: str = "smollm2-135m-instruct"
    setting: str = "pretrained"
    data_source: str = "mini"
    data_path: str = ""
    data_options: dict = field(default_factory=dict)
    retain_model: str = ""  # the retain model for forget quality (a `tofu` setting); `fictional` trains its own
    finetune: dict = field(default_factory=dict)  # `fictional`: finetuning hyper-parameters (finetune.FinetuneHParams)
    method: str = "rome"
    label: str = ""
    hparams: dict = field(default_factory=dict)
    refusal: str = "fixed"  # fixed | sampled (data.refusals) | self (recipes.self_improvement)
    merge_group: int = 0  # > 0: query merging, that many same-subject forget questions per edit request
    chunks: int = 1  # > 1: sequential unlearning, the forget set in that many chunks, evaluated after each
    seed: int = 0
    max_new_tokens: int = 32
    batch_size: int = 16
    paraphrased: list | None = None  # splits also asked in paraphrase (None: every split that has paraphrases)
    device: str = ""
    dtype: str = ""
    nli_model: str = ""  # a local NLI model directory (or cached hub id): entailment is computed with it
    prompt: dict = field(default_factory=dict)  # {template, system} (model.prompts): how every question is rendered
    save_changes: bool = False  # write the change beside the result file (`change_path`): deltas or the adaptor

    def __post_init__(self) -> None:
        get_method(self.method)
        self.hparams = _mapping(self.hparams, "hparams")
        self.finetune = _mapping(self.finetune, "finetune")
        self.prompt = _mapping(self.prompt, "prompt")
        prompt_format(self.prompt, "parameter prompt")
        self.data_options = source_options(self.data_source, _mapping(self.data_options, "data_options"))
        for name in ("seed", "max_new_tokens", "batch_size", "merge_group", "chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise E2UError(f"parameter {name}: expected a non-negative integer, got {value!r}")
        for name in ("model", "setting", "data_source", "data_path", "retain_model", "label", "device", "dtype",
                     "nli_model"):
            if not isinstance(getattr(self, name), str):
                raise E2UError(f"parameter {name}: expected a string, got {getattr(self, name)!r}")
        if self.paraphrased is not None and (not isinstance(self.paraphrased, list)
                                             or not all(isinstance(n, str) and n for n in self.paraphrased)):
            raise E2UError(f"parameter paraphrased: expected a list of split names such as ['forget'], or null for "
                           f"every split, got {self.paraphrased!r}")
        if not isinstance(self.save_changes, bool):
            raise E2UError(f"parameter save_changes: expected true or false, got {self.save_changes!r}")
        if self.refusal not in ("fixed", "sampled", "self"):
            raise E2UError(f"parameter refusal: expected 'fixed', 'sampled' or 'self', got {self.refusal!r}")
        if self.chunks < 1:
            raise E2UError(f"parameter chunks: expected an integer >= 1, got {self.chunks!r}")
        self.label = self.label or self.method

    @classmethod
    def from_json(cls, text: str) -> "CellParams":
        """The cell as the unlearn notebook receives it: one JSON object (unknown fields are errors)."""
        return from_json_object(cls, text, "parameter cell")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def title(self) -> str:
        """The chapter title of this cell's notebook."""
        return (f"{get_method(self.method).title}: {self.setting} knowledge ({self.data_source}), "
                f"{self.label}, seed {self.seed}")

    @property
    def evaluation(self) -> EvaluationSettings:
        """How the cell's models are evaluated (`cell.evaluation`)."""
        return EvaluationSettings(self.max_new_tokens, self.batch_size, self.paraphrased, self.nli_model)

    @property
    def prompt_format(self) -> PromptFormat | None:
        """How this cell's models render questions (`model.prompts.with_prompt_format`); None: as the model does."""
        return prompt_format(self.prompt, "parameter prompt")

    @property
    def cell_id(self) -> str:
        return f"{self.label}-seed{self.seed}"

    def keyed(self) -> dict:
        """The parameters a cell's key hashes: all of them, `save_changes` only when on and `prompt` only when given
        (a study that uses neither keeps the keys it had before the options existed)."""
        values = asdict(self)
        if not self.save_changes:
            del values["save_changes"]
        if not self.prompt:
            del values["prompt"]
        return values


def _mapping(value, name: str) -> dict:
    """A mapping parameter, given as a mapping or as the JSON text of one."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise E2UError(f"parameter {name}: expected a JSON object, got {value!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise E2UError(f"parameter {name}: expected a mapping, got {type(value).__name__}")
    return value
