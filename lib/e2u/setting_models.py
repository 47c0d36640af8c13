"""Which models a setting's cells use (paper section 4.1; TOFU, Maini et al. 2024).

* Pretrained knowledge (`probe`, `realworld`, `mini`): the model as named; it already knows the facts.
* Finetuned knowledge, embedded (`fictional`): the *target* model, the named model finetuned on every
  fictitious author, is the one unlearned; the *retain* model, finetuned on the retain authors only, is
  the reference that forget quality compares against. Both are trained once (`e2u prepare`) and cached.
* Finetuned knowledge, paper scale (`tofu`): the named model must already be finetuned on TOFU (e.g. the
  TOFU authors' checkpoints); a setting's `retain_model:` names its retain model, when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINETUNED_HERE = ("fictional",)  # sources whose target and retain models `e2u prepare` trains


@dataclass(frozen=True)
class SettingModels:
    target: str  # what the cells load and unlearn
    retain: str | None  # the retain model for forget quality, or None
    info: dict = field(default_factory=dict)  # how the finetuned models were made (memorisation report)


def setting_models(model: str, data_source: str, data_options: dict, retain_model: str = "",
                   device: str | None = None, finetune: dict | None = None) -> SettingModels:
    """The target and retain models of one setting; trains the finetuned ones on first use, with the
    setting's `finetune:` hyper-parameters over `prepare.FinetuneHParams`' defaults."""
    if data_source not in FINETUNED_HERE:
        return SettingModels(model, retain_model or None)
    from .prepare import prepare_finetuned

    prepared = prepare_finetuned(model, seed=data_options["seed"], n_authors=data_options["n_authors"],
                                 forget_percent=data_options["forget_percent"], hp=finetune or None,
                                 device=device)
    info = {role: {"path": str(path), "seconds": meta.get("seconds"), "final_loss": meta.get("final_loss"),
                   "memorisation": meta.get("memorisation")}
            for role, path, meta in (("target", prepared.target, prepared.target_info),
                                     ("retain", prepared.retain, prepared.retain_info))}
    return SettingModels(str(prepared.target), retain_model or str(prepared.retain), info)
