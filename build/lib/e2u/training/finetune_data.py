"""What a finetuned-knowledge source teaches: the target model's records, the retain model's, and the samples
the memorisation report checks (TOFU, Maini et al. 2024; PISTOL, Qiu et al. 2024).

* `fictional` (TOFU-style authors): the target learns every author, the retain model every author but the
  forget ones; the target does not depend on the forget split, so forget01/05/10 share it.
* `pistol` (contract graph): the target learns every edge, the retain model every edge but the forget edges
  (the PISTOL harness's `retain` model); LoRA by default, as the harness trains (`source_finetune_defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from e2u.data.fictional import all_finetune_records, fictional_splits
from e2u.data.pistol import PistolOptions, chosen_forget_edges, edges_of, pistol_rows, pistol_splits
from e2u.errors import E2UError
from e2u.training import finetune

FINETUNED_SOURCES = ("fictional", "pistol")  # sources whose target and retain models `e2u prepare` trains


@dataclass(frozen=True)
class FinetuneData:
    source: str
    name: str  # the data's part of the model directories' names, e.g. "fictional-s0-a10"
    target_records: list  # what the target model learns
    retain_records: list  # what the retain model learns: never a forget record
    retain_tag: str  # the retain model's role in its directory name, e.g. "retain90"
    report_splits: dict  # {"forget": [...], "retain": [...]}: what the memorisation report samples
    describe: dict = field(default_factory=dict)  # the data's identity, kept in the models' info files


def finetune_data(source: str, path: str | None, options: Mapping) -> FinetuneData:
    """The records each finetuned model of `source` learns; `options` are the source's (checked) options."""
    if source == "fictional":
        seed, n_authors, percent = options["seed"], options["n_authors"], options["forget_percent"]
        splits = fictional_splits(seed, n_authors, percent)
        return FinetuneData("fictional", f"fictional-s{seed}-a{n_authors}", all_finetune_records(seed, n_authors),
                            splits["retain_train"], f"retain{100 - percent}",
                            {"forget": splits["forget"], "retain": splits["retain"]},
                            {"seed": seed, "n_authors": n_authors, "forget_percent": percent})
    if source == "pistol":
        splits = pistol_splits(path or None, **options)
        opts = PistolOptions.of(options)
        forget_edges = sorted(chosen_forget_edges(list(edges_of(pistol_rows(path or None, opts))), opts))
        return FinetuneData("pistol", f"pistol-s{options['seed']}", splits["target_train"], splits["retain_train"],
                            "retain-" + "-".join(forget_edges).replace("_", ""),
                            {"forget": splits["forget"], "retain": splits["retain"]},
                            {k: v for k, v in {**options, "path": path or ""}.items() if k not in ("forget_questions", "forget_sample")})
    raise E2UError(f"data source {source!r} has no finetuned models trained here; expected one of {FINETUNED_SOURCES}")


# The options each finetuned model's records depend on; settings that differ elsewhere (another draw of the
# questions to unlearn, another retain sample) share the model. The target learns everything, so the forget
# choice is not among its options.
RECORD_OPTIONS = {
    "fictional": {"target": ("seed", "n_authors"), "retain": ("seed", "n_authors", "forget_percent")},
    "pistol": {"target": ("seed", "n_edges", "n_independent", "hub", "config"),
               "retain": ("seed", "n_edges", "n_independent", "hub", "config", "forget_edges", "forget_draw")},
}


def model_identity(source: str, path: str, options: Mapping, role: str) -> dict:
    """What the `role` model's records depend on, without reading the data (a planner calls it: a hub data set
    is not fetched to plan a study)."""
    return {"source": source, "path": path, **{name: options.get(name) for name in RECORD_OPTIONS[source][role]}}


def source_finetune_defaults(source: str) -> dict:
    """The hyper-parameters a source's models are finetuned with unless the setting's `finetune:` says otherwise:
    `pistol` with a LoRA adapter (the PISTOL harness; values sized for the embedded model on a CPU,
    `finetune.EMBEDDED_LORA_HPARAMS`), `fictional` with `finetune.FinetuneHParams`' own defaults."""
    return dict(finetune.EMBEDDED_LORA_HPARAMS) if source == "pistol" else {}
