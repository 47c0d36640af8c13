"""`e2u rerun <chapter> -p key value`: the chapter is rerun with the changed parameters (checked before any
computation) as a variant beside the study's cell, and says so at its top; bad input is named."""

from __future__ import annotations

import json

import nbformat
import pytest
from test_study_end_to_end import write_tiny_study

from e2u.book import report
from e2u.book.build import execute_chapter, stale_outputs
from e2u.errors import E2UError
from e2u.study.grid import load_study
from e2u.study.rerun import changed_cell, find_chapter, rerun_chapter
from e2u.study.result_files import read_variants
from e2u.study.runner import run_study
from e2u.study.variants import split_variant, variant_name


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


def test_a_variant_is_named_by_what_changed_and_read_back_apart_from_the_cell():
    assert variant_name({"lr": [2e-5, 1e-05]}) == "rerun-lr-1e-05"
    name = variant_name({"hparams.layers": [[4], [4, 5]], "refusal": ["fixed", "self"], "v_lr": [0.5, 0.25]})
    assert name == "rerun-layers-4_5-refusal-self-v_lr-0.25"
    assert split_variant(f"ga-seed0.{name}") == ("ga-seed0", name) and split_variant("ga-seed0") == ("ga-seed0", "")
    assert variant_name({"refusal": ["fixed", "a b/c"]}) == "rerun-refusal-a_b_c"  # a file name, never a path


def test_a_rerun_is_a_variant_beside_the_cell_and_leaves_the_study_byte_for_byte(study, tmp_path):
    results, book = tmp_path / "results", tmp_path / "book"
    rome = type(study)(study.name, (study.cells[0],), study.source)
    assert [o.status for o in run_study(rome, results, book)] == ["ran"]
    own_result = results / "tiny" / "pretrained" / "rome-seed0.json"
    own_chapter = book / "runs" / "tiny" / "pretrained" / "rome-seed0.ipynb"
    kept = own_result.read_bytes(), own_chapter.read_bytes()

    changes, chapter = rerun_chapter(study, "pretrained/rome-seed0", [("layer", "2")], results, book)
    assert changes == {"layer": [1, 2]} and chapter == "pretrained/rome-seed0.rerun-layer-2"
    assert (own_result.read_bytes(), own_chapter.read_bytes()) == kept
    variant = json.loads(own_result.with_name("rome-seed0.rerun-layer-2.json").read_text())
    assert variant["params"]["hparams"]["layer"] == 2 and variant["log"]["layers"] == [2]
    notebook = nbformat.read(own_chapter.with_name("rome-seed0.rerun-layer-2.ipynb"), 4)
    shown = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert "Rerun with parameters that differ from the study" in shown and "(the study's: 1)" in shown
    assert [o.status for o in run_study(rome, results, book)] == ["cached"]  # the study's cell is still its own

    # the claims (and the setting pages) read the study's own cells; the summary lists the rerun apart
    assert report.load_results(results / "tiny") == [json.loads(kept[0])]
    assert [v["variant"] for v in read_variants(results / "tiny")] == ["rerun-layer-2"]
    assert not stale_outputs(study, results, book)  # a rerun of a current cell is kept by `e2u book`
    execute_chapter("summary", tmp_path / "summary.ipynb", {"results_dir": str(results / "tiny"), "study_name": "tiny"})
    summary = nbformat.read(tmp_path / "summary.ipynb", 4)
    section = [c for c in summary.cells if c.source.startswith("## Reruns beside the study")][0]
    table = summary.cells[summary.cells.index(section) + 1].outputs[0]["data"]["text/html"]
    assert "rerun-layer-2" in table and ">study<" in table
    assert "1 cells of study" in json.dumps([c.get("outputs") for c in summary.cells])  # above: the study's cell alone

