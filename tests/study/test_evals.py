"""`e2u eval`: a cell's saved change, evaluated on its setting, gives that cell's own "after" values; the result goes
beside the cells (`<setting>/evals/`), never over a cell's result file; the option leaves old cells' keys alone."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import make_tiny_llama, saved_tiny_model
from test_loaders import tofu_dir

from e2u.book.evals import evals_table
from e2u.cell.run import run_cell
from e2u.cli import main
from e2u.errors import E2UError
from e2u.model.prompts import format_key
from e2u.study.evals import evaluate_on_setting, setting_cell, setting_data
from e2u.study.grid import cell_key, load_study, result_path

ROME = "{name: rome, hparams: {layer: 1, n_context_templates: 0, v_num_grad_steps: 3, mom2_n_tokens: 300, " \
       "mom2_corpus_texts: 4}}"
GRACE = "{name: grace, hparams: {layer: 2, n_iter: 3, max_retain_routing: 1.0}}"
GD_LORA = "{name: gradient_difference, label: gd-lora, hparams: {adapter: lora, epochs: 1, batch_size: 2, lr: 1.0e-2}}"


def study_file(tmp_path, save_changes: bool):
    path = tmp_path / "study.yaml"
    path.write_text(
        f"name: tiny\nmodel: {saved_tiny_model(tmp_path)}\nevaluation: {{max_new_tokens: 3, batch_size: 8}}\n"
        f"save_changes: {str(save_changes).lower()}\nsettings:\n"
        f"  - {{name: tofu, data: {{source: tofu, path: {tofu_dir(tmp_path)}, forget_split: forget01}}}}\n"
        f"methods:\n  - {ROME}\n  - {GRACE}\n  - {GD_LORA}\n")
    return path


@pytest.mark.parametrize("label", ["rome", "grace", "gd-lora"])
def test_e2u_eval_of_a_saved_change_gives_the_cells_after_values(tmp_path, label, capsys):
    path = study_file(tmp_path, save_changes=True)
    study = load_study(path)
    cell = next(c for c in study.cells if c.label == label)
    results = tmp_path / "results"
    result = run_cell(cell, result_path(results, study, cell))
    change = results / "tiny" / "tofu" / result["change_file"]["name"]
    assert change.stat().st_size == result["change_file"]["bytes"] > 0
    stored = json.loads(result_path(results, study, cell).read_text())
    assert stored["change_file"] == result["change_file"]

    assert main(["eval", str(path), "tofu", "--change", str(change), "--results", str(results)]) == 0
    written = results / "tiny" / "tofu" / "evals" / f"{cell.cell_id}.json"
    assert str(written) in capsys.readouterr().out
    evaluated = json.loads(written.read_text())
    assert evaluated["kind"] == "eval" and evaluated["evaluated"]["change"] == str(change.resolve())
    assert set(evaluated["after"]) == set(result["after"])
    for split, items in result["after"].items():
        for mine, theirs in zip(evaluated["after"][split], items, strict=True):
            assert mine["generated"] == theirs["generated"], (split, mine["question"])
            for metric, value in theirs.items():
                if isinstance(value, float):
                    assert abs(mine[metric] - value) <= 1e-6, (split, metric)
    assert json.loads(result_path(results, study, cell).read_text()) == stored  # the cell's result untouched
    shown = evals_table(results / "tiny", "tofu")  # the setting chapter's table of evaluations
    assert list(shown.index) == [cell.cell_id] and shown.loc[cell.cell_id, "evaluated"] == change.name
    assert shown.loc[cell.cell_id, "forget Rouge1"] == round(result["summary"]["after"]["forget"]["rouge1_recall"], 3)


def test_e2u_eval_of_a_change_for_another_setting_model_is_a_clear_error(tmp_path, capsys):
    path = study_file(tmp_path, save_changes=True)
    study = load_study(path)
    cell = next(c for c in study.cells if c.label == "rome")
    results = tmp_path / "results"
    result = run_cell(cell, result_path(results, study, cell))
    change = results / "tiny" / "tofu" / result["change_file"]["name"]
    path.write_text(path.read_text().replace(str(tmp_path / "model"), str(tmp_path / "model2")))
    model, tokenizer = make_tiny_llama(seed=3)  # the setting now names another model
    model.save_pretrained(tmp_path / "model2")
    tokenizer.save_pretrained(tmp_path / "model2")
    assert main(["eval", str(path), "tofu", "--change", str(change), "--results", str(results)]) == 2
    error = capsys.readouterr().err
    assert str(change) in error and "made for the model with fingerprint" in error
    assert not (results / "tiny" / "tofu" / "evals").exists()  # nothing written


def test_save_changes_off_keeps_the_cells_keys_and_on_changes_them(tmp_path):
    path = study_file(tmp_path, save_changes=False)
    off = load_study(path).cells[0]
    path.write_text(path.read_text().replace("save_changes: false", "save_changes: true"))
    on = load_study(path).cells[0]
    assert "save_changes" not in off.keyed() and on.keyed()["save_changes"] is True
    assert cell_key(off) == cell_key(replace(on, save_changes=False)) != cell_key(on)


def test_the_setting_data_renders_with_the_settings_prompt_format(tmp_path):
    """`e2u eval` and `api.evaluate(study=...)` ask the questions as the setting's cells do."""
    path = study_file(tmp_path, save_changes=False)
    path.write_text(path.read_text().replace("save_changes: false\n",
                                             "save_changes: false\nprompt: {template: 'Question : {question} Answer :'}\n"))
    cell = setting_cell(load_study(path), "tofu")
    _, _, tokenizer, splits, _ = setting_data(cell)
    assert format_key(tokenizer) == {"prompt": {"template": "Question : {question} Answer :", "system": ""}}


def test_an_eval_of_something_else_under_a_taken_name_is_refused_and_overwrites_nothing(tmp_path):
    path = study_file(tmp_path, save_changes=False)
    results = tmp_path / "results"
    taken = results / "tiny" / "tofu" / "evals" / "model.json"
    taken.parent.mkdir(parents=True)
    taken.write_text(json.dumps({"kind": "eval", "evaluated": {"model": "someone/else"}}))
    before = taken.read_text()
    with pytest.raises(E2UError, match="holds the evaluation of something else.*another --name"):
        evaluate_on_setting(load_study(path), "tofu", results, model=str(tmp_path / "model"), name="model")
    assert taken.read_text() == before
