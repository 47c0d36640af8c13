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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from e2u.evaluation import memorisation
from e2u.files import e2u_home, sha256_of_json
from e2u.model import store
from e2u.model.load import load_model
from e2u.model.prompts import PromptFormat, prompt_format, with_prompt_format
from e2u.model.source import base_model_identity
from e2u.training import finetune as training
from e2u.training.finetune_data import FINETUNED_SOURCES, finetune_data, source_finetune_defaults
from e2u.training.shortcuts import FrozenStates

log = logging.getLogger(__name__)

INFO_FILE = "e2u_finetune.json"  # beside a finetuned model's weights: its key, hyper-parameters, log, report


@dataclass(frozen=True)
class SettingModels:
    target: str  # what the cells load and unlearn
    retain: str | None  # the retain model for forget quality, or None
    info: dict = field(default_factory=dict)  # how the finetuned models were made (memorisation report)


def setting_models(model: str, data_source: str, data_options: dict, retain_model: str = "",
                   device: str | None = None, finetune: dict | None = None, data_path: str = "",
                   prompt: dict | None = None) -> SettingModels:
    """The target and retain models of one setting; trains the finetuned ones on first use, with the
    setting's `finetune:` hyper-parameters over the source's defaults (`finetune_data.source_finetune_defaults`),
    on questions rendered with the setting's `prompt` format (`model.prompts`)."""
    if data_source not in FINETUNED_SOURCES:
        return SettingModels(model, retain_model or None)
    prepared = prepare_models(model, finetune_data(data_source, data_path or None, data_options), hp=finetune or None,
                              device=device, prompt=prompt)
    info = {role: {"path": str(path), "seconds": meta.get("seconds"), "final_loss": meta.get("final_loss"),
                   "adapter": meta.get("hparams", {}).get("adapter", "full"), "memorisation": meta.get("memorisation")}
            for role, path, meta in (("target", prepared.target, prepared.target_info),
                                     ("retain", prepared.retain, prepared.retain_info))}
    return SettingModels(str(prepared.target), retain_model or str(prepared.retain), info)


def setting_finetune_jobs(model: str, data_source: str, data_options: dict, finetune: dict | None = None,
                          data_path: str = "", prompt: dict | None = None) -> tuple[object, object, list["FinetuneJob"]] | None:
    """(data, hyper-parameters, jobs) of a setting whose source is finetuned here (`finetune_jobs`), else None."""
    if data_source not in FINETUNED_SOURCES:
        return None
    data = finetune_data(data_source, data_path or None, data_options)
    hp, jobs = finetune_jobs(model, data, finetune or None, prompt=prompt)
    return data, hp, jobs


def prepare_setting_model(model: str, data_source: str, data_options: dict, role: str, finetune: dict | None = None,
                          data_path: str = "", device: str | None = None, prompt: dict | None = None) -> dict:
    """Train one of a setting's finetuned models (`role`: target or retain) unless it is cached; its info.
    A study trains the two as separate steps, side by side on two workers (`shared_work`)."""
    data, hp, jobs = setting_finetune_jobs(model, data_source, data_options, finetune, data_path, prompt)
    job = next(j for j in jobs if j.role == role)
    return cached_info(job) or train_finetune_job(model, data, hp, job, device=device)[0]


# ---- the cached target and retain models of a finetuned setting ----------------------------------


@dataclass(frozen=True)
class PreparedModels:
    """Directories of the finetuned models (load them with `model.load.load_model(str(path))`) and their records."""
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
    data = finetune_data("fictional", None, {"seed": seed, "n_authors": n_authors, "forget_percent": forget_percent})
    return prepare_models(base_model_name, data, hp, home, report_size=report_size, device=device)


@dataclass(frozen=True)
class FinetuneJob:
    """One finetuned model of a setting: its role (`target` / `retain`), directory, key and training records."""
    role: str
    path: Path
    key: str
    records: list
    digest: str
    prompt: PromptFormat | None = None  # how its questions are rendered (None: as the model does)


def finetune_jobs(base_model_name: str, data, hp: Mapping | None = None,
                  home: str | os.PathLike | None = None, prompt: dict | None = None) -> tuple[object, list[FinetuneJob]]:
    """The hyper-parameters (the source's defaults updated with `hp`) and the target and retain models' jobs.

    Each lives in `<home>/models/<name>` where the name holds the base model, the data's name, the role
    (`full` / the retain tag) and a hash of the hyper-parameters, the data, the base weights and the `prompt` format
    (when one is given: the questions are trained as they are rendered). No model is
    loaded here (a study's planner, which must not read a hub data set either, uses
    `finetune_data.model_identity` instead)."""
    hp = training.finetune_hparams({**source_finetune_defaults(data.source), **(hp or {})})
    base, fmt = base_model_identity(base_model_name), prompt_format(prompt)
    root = (Path(home).expanduser() if home is not None else e2u_home()) / "models"
    jobs = []
    for role, tag, records in (("target", "full", data.target_records), ("retain", data.retain_tag, data.retain_records)):
        digest = records_digest(records)
        key = sha256_of_json({"version": training.FINETUNE_VERSION, "base": base, "hparams": hp.to_dict(),
                              "data": digest, **({"prompt": asdict(fmt)} if fmt else {})})[:12]
        jobs.append(FinetuneJob(role, root / f"{store.slug(base_model_name)}-{data.name}-{tag}-{key}", key,
                                records, digest, fmt))
    return hp, jobs


def cached_info(job: FinetuneJob) -> dict | None:
    """The info file of `job`'s model when its directory holds that model (its key), else None."""
    return store.trusted(job.path, job.key, INFO_FILE)


def train_finetune_job(base_model_name: str, data, hp, job: FinetuneJob, *, report_size: int = 20,
                       device: str | None = None, states=None) -> tuple[dict, object]:
    """Finetune the base model on `job`'s records, write it atomically with its info file. Returns the info
    (hyper-parameters, data hash, seconds, final loss and the memorisation report: greedy ROUGE-L recall on
    samples of the forget and retain records) and the frozen blocks' states it used (`FrozenStates`, made when
    `states` is None and the lower blocks are frozen; pass them to the next job of the same base)."""
    model, tokenizer = load_model(base_model_name, device=device)
    with_prompt_format(tokenizer, job.prompt)
    if states is None and training.first_trained_block(model, hp) > 0:
        states = FrozenStates(training.first_trained_block(model, hp))
    log.info("finetuning the %s model on %d records -> %s", job.role, len(job.records), job.path)
    train_log = training.finetune(model, tokenizer, job.records, hp, desc=f"finetune {job.role}", states=states)
    started = time.perf_counter()
    report = memorisation.memorisation_report(model, tokenizer, data.report_splits, report_size, 0)
    info = {
        "key": job.key, "role": job.role, "base_model": base_model_identity(base_model_name),
        "data": {"source": data.source, **data.describe, "records": len(job.records), "digest": job.digest},
        "hparams": hp.to_dict(), "finetune_version": training.FINETUNE_VERSION, "seconds": train_log["seconds"],
        "report_seconds": round(time.perf_counter() - started, 2), "final_loss": train_log["final_loss"],
        "log": train_log, "memorisation": report, **({"prompt": asdict(job.prompt)} if job.prompt else {}),
    }
    store.save_model_atomic(model, tokenizer, job.path, info, INFO_FILE)
    return info, states


def prepare_models(
    base_model_name: str, data, hp: Mapping | None = None, home: str | os.PathLike | None = None,
    *, report_size: int = 20, device: str | None = None, prompt: dict | None = None,
) -> PreparedModels:
    """The target and retain models of a finetuned setting (`finetune_data.FinetuneData`), trained once and cached
    (`finetune_jobs`), one after the other, sharing the frozen blocks' states when the lower blocks are frozen."""
    hp, jobs = finetune_jobs(base_model_name, data, hp, home, prompt)
    infos: dict[str, dict] = {}
    states = None  # shared: both runs start from one base
    for job in jobs:
        info = cached_info(job)
        if info is not None:
            log.info("finetuned %s model: cached at %s", job.role, job.path)
            infos[job.role] = info
            continue
        infos[job.role], states = train_finetune_job(base_model_name, data, hp, job, report_size=report_size,
                                                     device=device, states=states)
    paths = {job.role: job.path for job in jobs}
    return PreparedModels(paths["target"], paths["retain"], infos["target"], infos["retain"])
