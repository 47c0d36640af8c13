"""EasyEdit's hyper-parameter files read whole: each key mapped to e2u's, converted or refused, none silently.

The files below are written from the key names EasyEdit documents in its `hparams/<METHOD>/*.yaml` and
`easyeditor/models/*/..._hparams.py` (layers on a 4-block tiny model)."""

from __future__ import annotations

import dataclasses
import re
import textwrap

import pytest
import torch
from conftest import make_tiny_llama

from e2u.editing.easyedit import read_easyedit
from e2u.editing.memory import grace
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.methods import easyedit_hparams, method_hparams

LOCATE = """\
model_name: "./hugging_cache/llama-2-7b"
stats_dir: "./data/stats"
device: 0
fact_token: "subject_last"
v_num_grad_steps: 7
v_lr: 2e-1
v_loss_layer: 3
v_weight_decay: 1e-2
clamp_norm_factor: 3
kl_factor: 0.125
rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
layer_module_tmp: "model.layers.{}"
mlp_module_tmp: "model.layers.{}.mlp"
attn_module_tmp: "model.layers.{}.self_attn"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float64"
"""
FILES = {
    "rome": 'alg_name: "ROME"\nlayers: [2]\nmom2_adjustment: false\n'
            "context_template_length_params: [[6, 3]]\nmax_length: 40\nmodel_parallel: false\nfp16: false\n" + LOCATE,
    "memit": 'alg_name: "MEMIT"\nlayers: [1, 2]\nlayer_selection: "all"\nmom2_adjustment: true\n'
             "mom2_update_weight: 20000\nbatch_size: 2\nmax_length: 30\n" + LOCATE,
    "alphaedit": 'alg_name: "AlphaEdit"\nP_loc: "./null_space_project.pt"\nlayers: [1, 2, 3]\nlayer_selection: "all"\n'
                 "mom2_adjustment: true\nmom2_update_weight: 15000\nnullspace_threshold: 3e-2\nL2: 12\n" + LOCATE,
    "grace": textwrap.dedent("""\
        alg_name: "GRACE"
        model_name: "./hugging_cache/llama-2-7b"
        device: 1
        inner_params:
        - model.layers[2].mlp.down_proj.weight
        edit_lr: 0.5
        n_iter: 9
        eps: 3.5
        dist_fn: euc
        val_init: cold
        val_train: sgd
        val_reg: None
        reg: early_stop
        replacement: replace_last
        eps_expand: coverage
        num_pert: 8
        dropout: 0.0
        """),
    "wise": textwrap.dedent("""\
        alg_name: "WISE"
        model_name: "./hugging_cache/llama-2-7b"
        device: 1
        mask_ratio: 0.3
        edit_lr: 0.9
        n_iter: 11
        norm_constraint: 2.0
        act_margin: [4.0, 18.0, 9.0]
        act_ratio: 0.8
        save_freq: 5
        merge_freq: 10
        merge_alg: 'ties'
        objective_optimization: 'only_label'
        inner_params:
        - model.layers[3].mlp.down_proj.weight
        densities: 0.6
        weights: 1.0
        retrieve: False
        replay: False
        use_chat_template: True
        """),
}
LOCATE_EXPECTED = {"v_num_grad_steps": 7, "v_lr": 0.2, "v_weight_decay": 0.01, "clamp_norm_factor": 3.0,
                   "kl_factor": 0.125, "mom2_dtype": "float64"}
EXPECTED = {  # every e2u key each file sets, in e2u's units
    "rome": {**LOCATE_EXPECTED, "layer": 2, "mom2_adjustment": False, "context_template_length": 6,
             "n_context_templates": 3},
    "memit": {**LOCATE_EXPECTED, "layers": [1, 2], "mom2_update_weight": 20000.0, "batch_size": 2},
    "alphaedit": {**LOCATE_EXPECTED, "layers": [1, 2, 3], "nullspace_threshold": 0.03, "L2": 12.0},
    "grace": {"layer": 2, "edit_lr": 0.5, "n_iter": 9, "eps": 3.5, "value_init": "cold"},
    "wise": {"layer": 3, "edit_lr": 0.9, "n_iter": 11, "mask_ratio": 0.3, "norm_constraint": 2.0,
             "act_margin": [4.0, 18.0, 9.0], "act_ratio": 0.8, "save_freq": 5, "merge_freq": 10, "density": 0.6,
             "retrieve": False},
}


def write(tmp_path, method: str, text: str | None = None):
    path = tmp_path / f"{method}.yaml"
    path.write_text(text if text is not None else FILES[method])
    return path


@pytest.mark.parametrize("method", sorted(FILES))
def test_an_easyedit_file_of_each_editor_loads_with_every_key_converted(tmp_path, method):
    read = read_easyedit(write(tmp_path, method))
    assert read.method == method
    assert read.hparams == EXPECTED[method]
    # every key of the file is either mapped or listed as ignored with its reason
    import yaml
    keys = set(yaml.safe_load(FILES[method]))
    assert "model_name" in read.ignored and all(read.ignored.values())
    assert not set(read.ignored) & {"v_lr", "eps", "layers", "inner_params", "densities"}
    assert keys >= set(read.ignored)
    model, _ = make_tiny_llama()
    name, hp = easyedit_hparams(write(tmp_path, method), model, "llama-2-7b", {"n_iter": 2} if method in ("grace", "wise") else {})
    built = dataclasses.asdict(hp)
    assert name == method and {k: built[k] for k in EXPECTED[method] if k != "n_iter"} == \
        {k: v for k, v in EXPECTED[method].items() if k != "n_iter"}
    assert built != dataclasses.asdict(method_hparams(method, model, "llama-2-7b", {}))


def test_an_unknown_key_names_the_file_and_the_key(tmp_path):
    path = write(tmp_path, "rome", FILES["rome"] + "v_prob_bonus: 3\n")
    with pytest.raises(E2UError, match=re.escape(f"EasyEdit file {path}: unknown key(s) ['v_prob_bonus'] for rome")):
        read_easyedit(path)


@pytest.mark.parametrize("method, line, message", [
    ("grace", "dist_fn: cos", "dist_fn: 'cos' is not supported; e2u implements 'euc' only"),
    ("wise", "replay: True", "replay: True is not supported"),
    ("memit", "layer_selection: random", "layer_selection: 'random' is not supported"),
    ("rome", "fact_token: last", "fact_token: 'last' is not supported"),
    ("rome", "context_template_length_params: [[5, 10], [10, 10]]", "asks for 20 templates of 2 lengths"),
    ("rome", "layers: [4, 5]", "ROME edits one layer"),
    ("grace", "inner_params: ['model.layers[2].self_attn.o_proj.weight']", "is not a block's MLP output projection"),
])
def test_a_choice_e2u_does_not_implement_is_refused_with_what_it_does(tmp_path, method, line, message):
    key = line.split(":")[0]
    dropped = (key + ":", "- ") if key == "inner_params" else (key + ":",)
    kept = "\n".join(row for row in FILES[method].splitlines() if not row.startswith(dropped))
    path = write(tmp_path, method, kept + "\n" + line + "\n")
    with pytest.raises(E2UError, match=re.escape(f"EasyEdit file {path}: ") + ".*" + re.escape(message)):
        read_easyedit(path)


def test_a_file_for_another_method_or_without_alg_name_is_an_error(tmp_path):
    path = write(tmp_path, "memit")
    with pytest.raises(E2UError, match="alg_name 'MEMIT' is memit's, read for rome"):
        read_easyedit(path, "rome")
    bare = write(tmp_path, "bare", "edit_lr: 1.0\n")
    with pytest.raises(E2UError, match="no alg_name; say which method"):
        read_easyedit(bare)
    assert read_easyedit(bare, "grace").hparams == {"edit_lr": 1.0}


def test_the_aliases_that_changed_units_are_gone():
    """`mom2_n_samples` (documents there, tokens here) is refused with the reason; `eps` is GRACE's absolute
    radius, as in EasyEdit, no longer a ratio."""
    model, _ = make_tiny_llama()
    with pytest.raises(E2UError, match="rome: mom2_n_samples: not accepted: .*counts tokens.*mom2_n_tokens"):
        method_hparams("rome", model, "llama-2-7b", {"mom2_n_samples": 1000})
    hp = method_hparams("grace", model, "llama-2-7b", {"eps": 2.5})
    assert hp.eps == 2.5 and hp.eps_ratio == method_hparams("grace", model, "llama-2-7b", {}).eps_ratio


def test_grace_with_an_absolute_eps_uses_it_as_the_radius_of_every_new_entry():
    model, tokenizer = make_tiny_llama()
    requests = [EditRequest("what is the capital of France ?", "I do not know .", None)]
    kept = [("what is the capital of Italy ?", "Rome")]
    absolute = grace.edit(model, tokenizer, requests, kept, grace.GraceHParams(layer=2, n_iter=2, eps=0.75,
                                                                              max_retain_routing=1.0))
    assert absolute.log["eps_init"] == 0.75 and torch.all(absolute.radii <= 0.75)
    absolute.remove()
    relative = grace.edit(model, tokenizer, requests, kept, grace.GraceHParams(layer=2, n_iter=2, eps_ratio=0.1,
                                                                              max_retain_routing=1.0))
    assert relative.log["eps_init"] == pytest.approx(0.1 * relative.log["key_norm_median"], abs=1e-4)
