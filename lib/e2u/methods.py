"""The one registry of methods: name -> (kind, hyper-parameter class, apply function, title).

Every method is called the same way, `apply(model, tokenizer, problem, hp)`, with the whole
`UnlearningProblem` (forget records, retain records, a lazily loaded reference model), and returns
what it changed: `WeightDeltas`, or an `Adaptor` it attached (result.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

from .editing import alphaedit, grace, memit, rome, wise
from .errors import E2UError
from .hparams import build_hparams, family_defaults
from .unlearning import dpo, gradient_ascent, gradient_difference, idk, kl, npo, rmu, simnpo


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "editing" | "unlearning"
    hparams: type
    apply: Callable
    title: str
    in_paper: bool = True  # one of the paper's methods (else a stronger baseline the paper left out)


METHODS = MappingProxyType({
    "rome": Method("rome", "editing", rome.RomeHParams, rome.apply, "ROME"),
    "memit": Method("memit", "editing", memit.MemitHParams, memit.apply, "MEMIT"),
    "alphaedit": Method("alphaedit", "editing", alphaedit.AlphaEditHParams, alphaedit.apply, "AlphaEdit"),
    "grace": Method("grace", "editing", grace.GraceHParams, grace.apply, "GRACE"),
    "wise": Method("wise", "editing", wise.WiseHParams, wise.apply, "WISE"),
    "gradient_ascent": Method("gradient_ascent", "unlearning", gradient_ascent.GradientAscentHParams,
                              gradient_ascent.apply, "GA"),
    "gradient_difference": Method("gradient_difference", "unlearning", gradient_difference.GradientDifferenceHParams,
                                  gradient_difference.apply, "GD"),
    "kl": Method("kl", "unlearning", kl.KLHParams, kl.apply, "KL"),
    "dpo": Method("dpo", "unlearning", dpo.DPOHParams, dpo.apply, "DPO"),
    "npo": Method("npo", "unlearning", npo.NPOHParams, npo.apply, "NPO", in_paper=False),
    "simnpo": Method("simnpo", "unlearning", simnpo.SimNPOHParams, simnpo.apply, "SimNPO", in_paper=False),
    "idk": Method("idk", "unlearning", idk.IDKHParams, idk.apply, "IDK", in_paper=False),
    "rmu": Method("rmu", "unlearning", rmu.RMUHParams, rmu.apply, "RMU", in_paper=False),
})


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise E2UError(f"unknown method {name!r}: expected one of {sorted(METHODS)}")
    return METHODS[name]


def method_hparams(name: str, model, model_name: str, overrides: dict | None):
    """Defaults for this model family, then the cell's overrides (unknown keys are errors)."""
    method = get_method(name)
    model_type = getattr(model.config, "model_type", None)
    values = family_defaults("unlearning", model_type, model_name) if method.kind == "unlearning" else {}
    values.update(family_defaults(name, model_type, model_name))
    values.update(overrides or {})
    return build_hparams(method.hparams, values, f"method {name}")


def statistics_layers(name: str, model, hp) -> list[int]:
    """The layers whose key second moments C = E[k k^T] the method reads (none for the training baselines)."""
    if name == "rome":
        return rome.rome_layer(model, hp) if hp.mom2_adjustment else []
    if name in ("memit", "alphaedit"):
        return memit.window_layers(model, hp)
    return []


def checked_layers(name: str, model, hp) -> list[int]:
    """The blocks `name` would change on `model` with `hp`, each index checked against the model's depth (an
    error names the hyper-parameter). `model` may be a skeleton on the meta device: only its structure is read."""
    from .editing.memory_site import memory_layer
    from .trainable import trained_blocks

    if name == "rome":
        return rome.rome_layer(model, hp)
    if name in ("memit", "alphaedit"):
        return memit.window_layers(model, hp)
    if name in ("grace", "wise"):
        return [memory_layer(model, hp.layer, name)]
    if name == "rmu":
        return rmu.rmu_blocks(model, hp)
    return trained_blocks(model, hp)


def run_method(name: str, model, tokenizer, problem, hp, previous=None):
    """`name`'s apply on the unlearning problem; the model changes in place. `previous`, the outcome of an
    earlier chunk of sequential unlearning: a memory editor goes on editing that memory; every other
    method starts from the weights the earlier chunk left."""
    from .editing.adaptor import MemoryAdaptor

    if isinstance(previous, MemoryAdaptor):
        return get_method(name).apply(model, tokenizer, problem, hp, memory=previous)
    return get_method(name).apply(model, tokenizer, problem, hp)
