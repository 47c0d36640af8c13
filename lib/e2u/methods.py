"""The one registry of methods: each name with what it is and what it needs.

Every method is called the same way, `apply(model, tokenizer, problem, hp)`, with the whole
`UnlearningProblem` (forget records, retain records, a lazily loaded reference model), and returns
what it changed: `WeightDeltas`, or an `Adaptor` it attached (result.py). What the study must prepare or
check for a method is asked of its entry here, never of its name: the blocks it changes, the layers whose key
statistics it reads, and the memory class it attaches (a memory editor continues its memory chunk after chunk,
and its saved file is loaded back through this registry).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch

from e2u.editing import alphaedit, memit, rome
from e2u.editing.easyedit import read_easyedit
from e2u.editing.locate import LocateHParams
from e2u.editing.memory import grace, wise
from e2u.editing.memory.adaptor import FORMAT as ADAPTOR_FORMAT
from e2u.editing.memory.adaptor import MemoryAdaptor, attach_saved
from e2u.editing.memory.site import memory_layer
from e2u.errors import E2UError
from e2u.hparams import build_hparams, family_defaults
from e2u.model.fingerprinted import read_header
from e2u.model.identity import tuned_identity
from e2u.model.load import model_fingerprint
from e2u.provenance import cell_code_files
from e2u.result import WeightDeltas
from e2u.training.trainable import trained_blocks
from e2u.unlearning import dpo, gradient_ascent, gradient_difference, idk, kl, npo, rmu, simnpo

Layers = Callable[[torch.nn.Module, object], list[int]]


def no_statistics(model, hp) -> list[int]:
    """A method that reads no key second moments C = E[k k^T] (the memories and the training baselines)."""
    return []


def rome_statistics(model, hp) -> list[int]:
    """ROME reads C at its one layer unless its mom2 adjustment is switched off (ROME eq. 2)."""
    return rome.rome_layer(model, hp) if hp.mom2_adjustment else []


def memory_block(name: str) -> Layers:
    """The one block a memory editor attaches to (its `layer`, checked against the model)."""
    return lambda model, hp: [memory_layer(model, hp.layer, name)]


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "editing" | "unlearning"
    hparams: type
    apply: Callable
    title: str
    changed_layers: Layers  # the blocks it changes on a model (a meta-device skeleton will do), indices checked
    statistics_layers: Layers = no_statistics  # the layers whose key second moments it reads
    memory: type[MemoryAdaptor] | None = None  # the memory it attaches and continues across chunks (GRACE, WISE)
    in_paper: bool = True  # one of the paper's methods (else a stronger baseline the paper left out)

    @property
    def locates(self) -> bool:
        """Whether it locates then edits (ROME, MEMIT, AlphaEdit): it needs context templates and key statistics,
        prepared once per setting before its cells. GRACE and WISE are editors that need neither."""
        return issubclass(self.hparams, LocateHParams)


def _baseline(name: str, module, hparams: type, title: str, in_paper: bool = True,
              changed_layers: Layers = trained_blocks) -> Method:
    return Method(name, "unlearning", hparams, module.apply, title, changed_layers, in_paper=in_paper)


METHODS = MappingProxyType({
    "rome": Method("rome", "editing", rome.RomeHParams, rome.apply, "ROME", rome.rome_layer, rome_statistics),
    "memit": Method("memit", "editing", memit.MemitHParams, memit.apply, "MEMIT", memit.window_layers,
                    memit.window_layers),
    "alphaedit": Method("alphaedit", "editing", alphaedit.AlphaEditHParams, alphaedit.apply, "AlphaEdit",
                        memit.window_layers, memit.window_layers),
    "grace": Method("grace", "editing", grace.GraceHParams, grace.apply, "GRACE", memory_block("grace"),
                    memory=grace.Codebook),
    "wise": Method("wise", "editing", wise.WiseHParams, wise.apply, "WISE", memory_block("wise"),
                   memory=wise.SideMemory),
    "gradient_ascent": _baseline("gradient_ascent", gradient_ascent, gradient_ascent.GradientAscentHParams, "GA"),
    "gradient_difference": _baseline("gradient_difference", gradient_difference,
                                     gradient_difference.GradientDifferenceHParams, "GD"),
    "kl": _baseline("kl", kl, kl.KLHParams, "KL"),
    "dpo": _baseline("dpo", dpo, dpo.DPOHParams, "DPO"),
    "npo": _baseline("npo", npo, npo.NPOHParams, "NPO", in_paper=False),
    "simnpo": _baseline("simnpo", simnpo, simnpo.SimNPOHParams, "SimNPO", in_paper=False),
    "idk": _baseline("idk", idk, idk.IDKHParams, "IDK", in_paper=False),
    "rmu": _baseline("rmu", rmu, rmu.RMUHParams, "RMU", in_paper=False, changed_layers=rmu.rmu_blocks),
})


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise E2UError(f"unknown method {name!r}: expected one of {sorted(METHODS)}")
    return METHODS[name]


def method_hparams(name: str, model, model_name: str, overrides: dict | None):
    """Defaults for this model family, then the cell's overrides (unknown keys are errors). The model's own tuned
    defaults are found by what it is (`model.identity`), whatever name `model_name` gives it."""
    method = get_method(name)
    model_type = getattr(model.config, "model_type", None)
    model_name = tuned_identity(model, model_name).name
    values = family_defaults("unlearning", model_type, model_name) if method.kind == "unlearning" else {}
    values.update(family_defaults(name, model_type, model_name))
    values.update(overrides or {})
    return build_hparams(method.hparams, values, name)


def easyedit_hparams(path: str | Path, model, model_name: str, overrides: dict | None = None,
                     method: str | None = None):
    """(method name, hyper-parameters) from an EasyEdit file (`editing/easyedit.py`): this model's defaults, then
    the file's keys in e2u's names, then `overrides`."""
    read = read_easyedit(path, method)
    return read.method, method_hparams(read.method, model, model_name, {**read.hparams, **(overrides or {})})


def method_file(name: str) -> Path:
    """The file that defines `name`'s apply: where its algorithm is written."""
    return Path(inspect.getsourcefile(get_method(name).apply)).resolve()


def method_code_files(name: str) -> list[Path]:
    """The library files a cell of `name` depends on: the cell's code without the other methods, and its own."""
    return cell_code_files(method_file(name), frozenset(method_file(m) for m in METHODS) - {method_file(name)})


def statistics_layers(name: str, model, hp) -> list[int]:
    """The layers whose key second moments C = E[k k^T] the method reads (none for the training baselines)."""
    return get_method(name).statistics_layers(model, hp)


def checked_layers(name: str, model, hp) -> list[int]:
    """The blocks `name` would change on `model` with `hp`, each index checked against the model's depth (an
    error names the hyper-parameter). `model` may be a skeleton on the meta device: only its structure is read."""
    return get_method(name).changed_layers(model, hp)


def run_method(name: str, model, tokenizer, problem, hp, previous=None):
    """`name`'s apply on the unlearning problem; the model changes in place. `previous`, the outcome of an
    earlier chunk of sequential unlearning: a memory editor goes on editing that memory; every other
    method starts from the weights the earlier chunk left."""
    method = get_method(name)
    if method.memory is not None and previous is not None:
        return method.apply(model, tokenizer, problem, hp, memory=previous)
    base = model_fingerprint(model)
    outcome = method.apply(model, tokenizer, problem, hp)
    if isinstance(outcome, WeightDeltas) and not outcome.base:  # what a saved change is checked against
        outcome.base = base
    return outcome


def load_adaptor(model: torch.nn.Module, path: str | Path) -> MemoryAdaptor:
    """Attach the adaptor saved at `path` (any registered memory's kind) to `model`, the model it was made for."""
    return attach_saved(model, path, {m.memory.kind: m.memory for m in METHODS.values() if m.memory is not None})


def load_change(model: torch.nn.Module, path: str | Path) -> WeightDeltas | MemoryAdaptor:
    """Apply the change saved at `path` (`save` of weight deltas or of a memory adaptor) to `model`, the model it
    was made on: the deltas added to its weights, or the memory attached. Another model is an error naming the
    file and both fingerprints, and leaves `model` as it was."""
    if read_header(path, "change file").get("format") == ADAPTOR_FORMAT:
        return load_adaptor(model, path)
    return WeightDeltas.load(model, path)
