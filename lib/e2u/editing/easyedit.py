"""EasyEdit's hyper-parameter files (`hparams/<METHOD>/<model>.yaml`) for ROME, MEMIT, AlphaEdit, GRACE and WISE.

Every key of such a file is handled one of four ways, never silently:
  * mapped: the same setting under our name (`layers` -> ROME's `layer`, `densities` -> `density`, `inner_params`
    -> the block index it names, `context_template_length_params` -> the count and length of the templates);
  * fixed: a choice e2u implements one way (`fact_token: subject_last`, `dist_fn: euc`, `merge_alg: ties`, ...):
    accepted at that value, any other value refused with what e2u does instead;
  * ignored, with the reason (where the model lives, module-name templates e2u reads from the model itself,
    EasyEdit's Wikipedia statistics corpus, which e2u cannot read offline and replaces by its own);
  * unknown: an error naming the file and the key.
No key needs the model to be converted: GRACE's `eps` is an absolute radius in EasyEdit and is read as our
`eps`, the same absolute radius (our `eps_ratio` is the relative one). `read_easyedit` returns our keys, which a
study's method entry (`easyedit: <file>`) or `methods.easyedit_hparams` then build on the model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import yaml

from e2u.errors import E2UError

log = logging.getLogger(__name__)

METHOD_OF_ALG = MappingProxyType({"ROME": "rome", "MEMIT": "memit", "AlphaEdit": "alphaedit", "GRACE": "grace",
                                  "WISE": "wise"})

_PLACEMENT = "the study places and loads the model (its `model:`, `device:` and `dtype:` fields)"
_TEMPLATE = "e2u finds the modules from the model itself (model/arch.py): the MLP output projection of each block"
IGNORED_BY_ALL = MappingProxyType({
    "alg_name": "the method's name, checked against the method it is read for",
    "model_name": _PLACEMENT, "device": _PLACEMENT, "model_parallel": _PLACEMENT, "fp16": _PLACEMENT,
    "max_length": "EasyEdit truncates prompts to this many tokens; e2u never truncates a question",
})
IGNORED_BY_LOCATE = MappingProxyType({
    "stats_dir": "e2u caches the key statistics under $E2U_HOME, keyed by the model's fingerprint",
    "v_loss_layer": "e2u reads the value loss at the model's output, what the reference's last layer gives",
    "mom2_dataset": "EasyEdit's Wikipedia corpus is not readable offline: e2u's own statistics corpus is used "
                    "(mom2_corpus, its size mom2_n_tokens)",
    "mom2_n_samples": "a number of Wikipedia documents, the corpus e2u replaces; e2u counts tokens of its own "
                      "corpus (mom2_n_tokens), so no conversion is possible",
    **{key: _TEMPLATE for key in ("rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp", "attn_module_tmp",
                                  "ln_f_module", "lm_head_module")},
})
# key: (the value e2u implements, what it does) -- any other value is refused
FIXED_BY_LOCATE = MappingProxyType({
    "fact_token": ("subject_last", "the key is the subject's last token (editing/requests.py)"),
})
FIXED_BY_BATCH = MappingProxyType({
    "layer_selection": ("all", "every listed layer is edited"),
    "mom2_adjustment": (True, "MEMIT's and AlphaEdit's solves always weigh the keys by C"),
})
SAME_BY_LOCATE = ("v_num_grad_steps", "v_lr", "v_weight_decay", "clamp_norm_factor", "kl_factor", "mom2_dtype")


@dataclass(frozen=True)
class EasyEditHParams:
    """An EasyEdit file read into e2u's keys: `hparams` for the method, `ignored` {key: why}."""
    method: str
    hparams: dict
    ignored: dict
    source: str


def _layer_list(value, where: str, key: str) -> list:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise E2UError(f"{where}: {key}: expected a list of layer indices, got {value!r}")
    return value


def _rome_layer(value, where: str) -> dict:
    layers = _layer_list(value, where, "layers")
    if len(layers) != 1:
        raise E2UError(f"{where}: layers: ROME edits one layer, this file names {layers}: use MEMIT for several")
    return {"layer": layers[0]}


def _templates(value, where: str) -> dict:
    """[[length, count]]: `count` context templates of `length` tokens (one pair: e2u samples one length)."""
    pairs = value if isinstance(value, list) else None
    if not pairs or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(n, int) for n in p) for p in pairs):
        raise E2UError(f"{where}: context_template_length_params: expected [[length, count], ...], got {value!r}")
    if len(pairs) != 1:
        total = sum(count for _, count in pairs)
        raise E2UError(f"{where}: context_template_length_params: {value!r} asks for {total} templates of "
                       f"{len(pairs)} lengths; e2u samples templates of one length: give one pair [[length, count]] "
                       "(the study's n_context_templates and context_template_length)")
    length, count = pairs[0]
    return {"context_template_length": length, "n_context_templates": count}


_SITE = re.compile(r"^[\w.]*?[.\[](\d+)\]?\.mlp\.(down_proj|c_proj|fc_out|fc2|dense_4h_to_h)(\.weight)?$")


def _memory_layer(value, where: str) -> dict:
    """inner_params: one MLP output projection, e.g. `model.layers[27].mlp.down_proj.weight` -> layer 27."""
    names = value if isinstance(value, list) else [value]
    if len(names) != 1 or not isinstance(names[0], str):
        raise E2UError(f"{where}: inner_params: expected one module name, got {value!r}")
    found = _SITE.match(names[0])
    if found is None:
        raise E2UError(f"{where}: inner_params: {names[0]!r} is not a block's MLP output projection, the only "
                       "place e2u's GRACE and WISE attach to")
    return {"layer": int(found.group(1))}


def _same(name: str) -> Callable[[object, str], dict]:
    return lambda value, where: {name: value}


def _fixed(key: str, accepted: tuple, does: str) -> Callable[[object, str], dict]:
    def check(value, where: str) -> dict:
        if value not in accepted:
            raise E2UError(f"{where}: {key}: {value!r} is not supported; e2u implements {accepted[0]!r} only: {does}")
        return {}
    return check


def _locate_rules() -> dict:
    rules = {key: _same(key) for key in SAME_BY_LOCATE}
    rules.update({key: _fixed(key, (value,), does) for key, (value, does) in FIXED_BY_LOCATE.items()})
    return rules


def _batch_rules(solve_keys: tuple) -> dict:
    rules = {**_locate_rules(), "layers": lambda v, where: {"layers": _layer_list(v, where, "layers")},
             "batch_size": _same("batch_size"), **{key: _same(key) for key in solve_keys}}
    rules.update({key: _fixed(key, (value,), does) for key, (value, does) in FIXED_BY_BATCH.items()})
    return rules


def _memory_rules() -> dict:
    return {"inner_params": _memory_layer, "edit_lr": _same("edit_lr"), "n_iter": _same("n_iter"),
            "batch_size": _same("batch_size")}


GRACE_FIXED = {
    "dist_fn": (("euc",), "keys are compared by Euclidean distance"),
    "val_train": (("sgd",), "values are trained without perturbation (the reference's Adam on the NLL)"),
    "eps_expand": (("coverage",), "a radius grows to cover a new key of the same label"),
    "dropout": ((0, 0.0), "no dropout"),
    "val_reg": ((None, "None"), "no value regulariser"),
    "reg": (("early_stop",), "training stops at early_stop_loss"),
}
WISE_FIXED = {
    "merge_alg": (("ties",), "shards are merged by TIES (editing/memory/ties.py)"),
    "objective_optimization": (("only_label",), "the loss is the NLL of the target alone"),
    "replay": ((False,), "earlier edits are not replayed"),
    "weights": ((1.0, 1), "TIES without rescaling"),
}


def _rules(method: str) -> tuple[dict, dict]:
    """({EasyEdit key: rule -> our keys}, {EasyEdit key: why it is ignored}) of `method`."""
    ignored = dict(IGNORED_BY_ALL)
    if method == "rome":
        rules = {**_locate_rules(), "layers": _rome_layer, "mom2_adjustment": _same("mom2_adjustment"),
                 "context_template_length_params": _templates}
        why = "e2u's ROME uses both keys, as the original implementation: k* averaged over templates, k of the prompt"
        ignored.update(IGNORED_BY_LOCATE, enable_prompt_keys=why, enable_random_prefix_keys=why,
                       original_implementation=why)
    elif method in ("memit", "alphaedit"):
        solve = ("mom2_update_weight",) if method == "memit" else ("nullspace_threshold", "L2")
        rules = _batch_rules(solve)
        ignored.update(IGNORED_BY_LOCATE)
        if method == "alphaedit":
            ignored.update(mom2_update_weight="AlphaEdit's solve (eq. 12) does not use it",
                           P_loc="e2u computes the null-space projector from this model's own key statistics, "
                                 "cached by its fingerprint (a file made for another model is never read)")
    elif method == "grace":
        rules = {**_memory_rules(), "eps": _same("eps"), "val_init": _same("value_init"),
                 **{key: _fixed(key, accepted, does) for key, (accepted, does) in GRACE_FIXED.items()}}
        ignored.update(num_pert="used only by perturbation training (val_train), which e2u does not implement",
                       replacement="e2u's GRACE routes every position whose key falls in a radius (grace.py: the "
                                   "reference replaces the last prompt token, which greedy decoding passes once)")
    elif method == "wise":
        same = ("mask_ratio", "norm_constraint", "act_margin", "act_ratio", "save_freq", "merge_freq", "retrieve")
        rules = {**_memory_rules(), **{key: _same(key) for key in same}, "densities": _same("density"),
                 **{key: _fixed(key, accepted, does) for key, (accepted, does) in WISE_FIXED.items()}}
        chat = "e2u renders every question through the model's chat template (the study's `prompt` option)"
        ignored.update(use_chat_template=chat, enable_thinking=chat, padding_side="e2u pads as each pass needs",
                       attn_implementation=_PLACEMENT, language_model_only=_PLACEMENT,
                       save_path="e2u saves a cell's memory itself", load_path="e2u saves a cell's memory itself")
    else:
        raise E2UError(f"EasyEdit files are read for {sorted(METHOD_OF_ALG.values())}, not {method!r}")
    return rules, ignored


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _number_or_value(value):
    """`5e-1` is a string to YAML 1.1; EasyEdit reads such strings as floats, and so does this reader."""
    return float(value) if isinstance(value, str) and _NUMBER.match(value) else value


def read_easyedit(path: str | Path, method: str | None = None) -> EasyEditHParams:
    """The EasyEdit file `path` in e2u's keys, for `method` (default: the file's `alg_name`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise E2UError(f"EasyEdit file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise E2UError(f"EasyEdit file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise E2UError(f"EasyEdit file {path}: expected a mapping of hyper-parameters")
    named = METHOD_OF_ALG.get(raw.get("alg_name")) if raw.get("alg_name") is not None else None
    if raw.get("alg_name") is not None and named is None:
        raise E2UError(f"EasyEdit file {path}: alg_name {raw['alg_name']!r}: expected one of {sorted(METHOD_OF_ALG)}")
    method = method or named
    if method is None:
        raise E2UError(f"EasyEdit file {path}: no alg_name; say which method it is for")
    if named is not None and named != method:
        raise E2UError(f"EasyEdit file {path}: alg_name {raw['alg_name']!r} is {named}'s, read for {method}")
    rules, reasons = _rules(method)
    where = f"EasyEdit file {path}"
    unknown = sorted(set(raw) - set(rules) - set(reasons))
    if unknown:
        raise E2UError(f"{where}: unknown key(s) {unknown} for {method}; known: {sorted(set(rules) | set(reasons))}")
    hparams: dict = {}
    for key, value in raw.items():
        if key in rules:
            hparams.update(rules[key](_number_or_value(value), where))
    ignored = {key: reasons[key] for key in raw if key in reasons}
    for key, reason in ignored.items():
        if key != "alg_name":
            log.warning("%s: %s ignored: %s", where, key, reason)
    return EasyEditHParams(method, hparams, ignored, str(path))
