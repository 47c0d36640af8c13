"""`e2u rerun <chapter> -p key value`: the chapter is rerun with the changed parameters (checked before any
computation) and says so at its top; bad input is named."""

from __future__ import annotations

import json

import nbformat
import pytest
from test_study_end_to_end import write_tiny_study

from e2u.errors import E2UError
from e2u.study.grid import load_study
from e2u.study.rerun import changed_cell, find_chapter, rerun_chapter


@pytest.fixture
def study(tmp_path):
    return load_study(write_tiny_study(tmp_path))


def test_an_unknown_chapter_lists_the_chapters_that_exist(study):
    with pytest.raises(E2UError, match=r"no chapter 'pretrained/memit-seed0' in study tiny; its chapters are: "
                                       r"pretrained/rome-seed0, pretrained/ga-seed0"):
        find_chapter(study, "pretrained/memit-seed0")


@pytest.mark.parametrize("pairs, named", [
    ([("speed", "3")], r"unknown parameter 'speed' for chapter pretrained/rome-seed0; allowed: the cell's .*max_new_tokens"
                       r".*or a hyper-parameter of rome: .*v_lr"),
    ([("hparams.speed", "3")], r"unknown hyper-parameter 'speed' of rome; allowed: .*layer"),
    ([("v_lr", "fast")], r"rome: v_lr: expected float, got 'fast'"),
    ([("layer", "9")], r"hyper-parameter layer: layer index 9 out of range: this model has layers 0..3"),
    ([("max_new_tokens", "many")], r"parameter max_new_tokens: expected a non-negative integer, got 'many'"),
    ([("setting", "finetuned")], r"unknown parameter 'setting'"),
])
def test_a_bad_parameter_is_named_before_anything_runs(study, pairs, named):
    with pytest.raises(E2UError, match=named):
        changed_cell(find_chapter(study, "pretrained/rome-seed0"), pairs)


def test_a_parameter_is_read_as_yaml_and_a_hyper_parameter_lands_in_hparams(study):
    cell = find_chapter(study, "pretrained/rome-seed0")
    new, changes = changed_cell(cell, [("layer", "2"), ("max_new_tokens", "3"), ("v_num_grad_steps", "4")])
    assert new.hparams["layer"] == 2 and new.max_new_tokens == 3 and new.method == "rome"
    # the study's values as the cell used them: its own (layer 1, 3 steps), or a default it did not set
    assert changes == {"layer": [1, 2], "max_new_tokens": [4, 3], "v_num_grad_steps": [3, 4]}
    _, default = changed_cell(cell, [("kl_factor", "0.1")])
    assert default == {"kl_factor": [0.0625, 0.1]}


def test_the_rerun_chapter_says_what_changed_and_its_result_holds_the_new_value(study, tmp_path):
    changes = rerun_chapter(study, "pretrained/rome-seed0", [("layer", "2")], tmp_path / "results", tmp_path / "book")
    assert changes == {"layer": [1, 2]}
    result = json.loads((tmp_path / "results" / "tiny" / "pretrained" / "rome-seed0.json").read_text())
    assert result["params"]["hparams"]["layer"] == 2 and result["log"]["layers"] == [2]
    notebook = nbformat.read(tmp_path / "book" / "runs" / "tiny" / "pretrained" / "rome-seed0.ipynb", 4)
    shown = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert "Rerun with parameters that differ from the study" in shown and "(the study's: 1)" in shown
