"""Which models a setting's cells use (paper section 4.1; TOFU, Maini et al. 2024).

* Pretrained knowledge (`probe`, `realworld`, `mini`): the model as named; it already knows the facts.
* Finetuned knowledge, embedded (`pistol`, `fictional`): the *target* model, the named model finetuned on
  every contract edge (or fictitious author), is the one unlearned; the *retain* model, finetuned on what is
  kept only, is the reference the book compares against. Both are trained once (`prepare_models`, run by
  `e2u prepare` or the study's setting step) and kept under `$E2U_HOME/models/`, named by what they depend
  on; what each learns is `finetune_data.py`'s.
* Finetuned knowledge, paper scale (`tofu`): the named model must already be finetuned on TOFU (e.g. the
  TOFU authors' checkpoints); a setting's `retain_model:` names its retain model, when there is one.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .files import e2u_home, sha256_of_json

log = logging.getLogger(__name__)

INFO_FILE = "e2u_finetune.json"  # beside a finetuned model's weights: its key, hyper-parameters, log, report


@dataclass(frozen=True)
class SettingModels:
    target: str  # what the cells load and unlearn
    retain: str | None  # the retain model for forget quality, or None
    info: dict = field(default_factory=dict)  # how the finetuned models were made (memorisation report)


def setting_models(model: str, data_source: str, data_options: dict, retain_model: str = "",
                   device: str | None = None, finetune: dict | None = None, data_path: str = "") -> SettingModels:
    """The target and retain models of one setting; trains the finetuned ones on first use, with the
    setting's `finetune:` hyper-parameters over the source's defaults (`finetune_data.source_finetune_defaults`)."""
    from .finetune_data import FINETUNED_SOURCES, finetune_data

    if data_source not in FINETUNED_SOURCES:
        return SettingModels(model, retain_model or None)
    prepared = prepare_models(model, finetune_data(data_source, data_path or None, data_options), hp=finetune or None,
                              device=device)
    info = {role: {"path": str(path), "seconds": meta.get("seconds"), "final_loss": meta.get("final_loss"),
                   "adapter": meta.get("hparams", {}).get("adapter", "full"), "memorisation": meta.get("memorisation")}
            for role, path, meta in (("target", prepared.target, prepared.target_info),
                                     ("retain", prepared.retain, prepared.retain_info))}
    return SettingModels(str(prepared.target), retain_model or str(prepared.retain), info)


# ---- the cached target and retain models of a finetuned setting ----------------------------------


@dataclass(frozen=True)
class PreparedModels:
    """Directories of the finetuned models (load them with `models.load_model(str(path))`) and their records."""

    target: Path  # finetuned on every record of the source
    retain: Path  # finetuned on the records that are kept only
    target_info: dict
    retain_info: dict


def records_digest(records: Sequence) -> str:
    """Hash of the (question, answer) pairs in order: what the finetuned weights depend on."""
    return sha256_of_json([[r.question, r.answer] for r in records])[:16]


def prepare_finetuned(
    base_model_name: str = "smollm2-135m-instruct", seed: int = 0, n_authors: int = 20,
    forget_percent: int = 10, hp: Mapping | None = None, home: str | os.PathLike | None = None,
    *, report_size: int = 20, device: str | None = None,
) -> PreparedModels:
    """The target and retain models of the `fictional` setting (TOFU's `ft_model` and retain model)."""
    from .finetune_data import finetune_data

    data = finetune_data("fictional", None, {"seed": seed, "n_authors": n_authors, "forget_percent": forget_percent})
    return prepare_models(base_model_name, data, hp, home, report_size=report_size, device=device)


def prepare_models(
    base_model_name: str, data, hp: Mapping | None = None, home: str | os.PathLike | None = None,
    *, report_size: int = 20, device: str | None = None,
) -> PreparedModels:
    """The target and retain models of a finetuned setting (`finetune_data.FinetuneData`), trained once and cached.

    Each lives in `<home>/models/<name>` where the name holds the base model, the data's name, the role
    (`full` / the retain tag) and a hash of the hyper-parameters (the source's defaults updated with `hp`), the
    data and the base weights; `INFO_FILE` beside the weights holds the hyper-parameters, data hash, seconds,
    final loss and the memorisation report (greedy ROUGE-L recall on samples of the forget and retain records).
    """
    from . import finetune as training, memorisation, model_store
    from .finetune_shortcuts import FrozenStates
    from .models import load_model

    from .finetune_data import source_finetune_defaults

    hp = training.finetune_hparams({**source_finetune_defaults(data.source), **(hp or {})})
    base = model_store.base_model_identity(base_model_name)
    root = (Path(home).expanduser() if home is not None else e2u_home()) / "models"
    jobs = {"target": ("full", data.target_records), "retain": (data.retain_tag, data.retain_records)}
    infos: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    pending = []
    for role, (tag, records) in jobs.items():
        digest = records_digest(records)
        key = sha256_of_json({"version": training.FINETUNE_VERSION, "base": base, "hparams": hp.to_dict(),
                              "data": digest})[:12]
        paths[role] = root / f"{model_store.slug(base_model_name)}-{data.name}-{tag}-{key}"
        info = model_store.trusted(paths[role], key, INFO_FILE)
        if info is not None:
            log.info("finetuned %s model: cached at %s", role, paths[role])
            infos[role] = info
        else:
            pending.append((role, records, digest, key))
    states = None
    for role, records, digest, key in pending:
        model, tokenizer = load_model(base_model_name, device=device)
        log.info("finetuning the %s model on %d records -> %s", role, len(records), paths[role])
        if states is None and training.first_trained_block(model, hp) > 0:
            states = FrozenStates(training.first_trained_block(model, hp))  # shared: both runs start from one base
        train_log = training.finetune(model, tokenizer, records, hp, desc=f"finetune {role}", states=states)
        started = time.perf_counter()
        report = memorisation.memorisation_report(model, tokenizer, data.report_splits, report_size, 0)
        infos[role] = {
            "key": key, "role": role, "base_model": base,
            "data": {"source": data.source, **data.describe, "records": len(records), "digest": digest},
            "hparams": hp.to_dict(), "finetune_version": training.FINETUNE_VERSION, "seconds": train_log["seconds"],
            "report_seconds": round(time.perf_counter() - started, 2), "final_loss": train_log["final_loss"],
            "log": train_log, "memorisation": report,
        }
        model_store.save_model_atomic(model, tokenizer, paths[role], infos[role], INFO_FILE)
        del model
    return PreparedModels(paths["target"], paths["retain"], infos["target"], infos["retain"])
