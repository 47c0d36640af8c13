"""Every cell's hyper-parameters are checked before a study's first cell starts: names, types, ranges and layer
indices against the model's config, on a skeleton of the model (no weights), fast."""

from __future__ import annotations

import time

import pytest
from conftest import tiny_tofu_cells

from e2u.cell.check import check_cells, model_skeleton
from e2u.errors import E2UError


@pytest.mark.parametrize("entry, named", [
    ("{name: rome, hparams: {v_lr: fast}}", r"rome-seed0: rome: v_lr: expected float, got 'fast'"),
    ("{name: rome, hparams: {layer: 9}}", r"rome-seed0: .*layer.*9"),
    ("{name: memit, hparams: {layers: [1, 7]}}", r"memit-seed0: .*7"),
    ("{name: wise, hparams: {layer: 4}}", r"wise-seed0: .*layer"),
    ("{name: grace, hparams: {eps_ratio: -1}}", r"grace-seed0: grace: eps_ratio: expected a number > 0"),
    ("{name: gradient_ascent, hparams: {train_layers: 5}}", r"gradient_ascent-seed0: .*train_layers: expected at most 4"),
    ("{name: rmu, hparams: {steer_layer: 4}}", r"rmu-seed0: rmu: steer_layer: expected a block below 4"),
    ("{name: alphaedit, hparams: {v_num_grad_steps: 0}}", r"alphaedit-seed0: alphaedit: v_num_grad_steps: expected an integer >= 1"),
    ("{name: kl, hparams: {speed: 3}}", r"kl-seed0: kl: speed: expected one of the hyper-parameters .*epochs.*; got an unknown key"),
])
def test_a_faulty_cell_is_named_with_its_hyper_parameter_before_anything_runs(tmp_path, entry, named):
    cells = tiny_tofu_cells(tmp_path, f"  - {{name: idk, label: good}}\n  - {entry}\n")
    with pytest.raises(E2UError, match=r"1 cell\(s\) would fail on their hyper-parameters; nothing was run:\n  tofu/"
                                       + named):
        check_cells(cells)


def test_good_cells_pass_in_well_under_a_second_each_and_the_skeleton_holds_no_weights(tmp_path):
    # the Llama family's defaults name layers of a 32-block model (ROME's 5, RMU's 7): this one has 4
    cells = tiny_tofu_cells(tmp_path, "".join(f"  - {m}\n" for m in (
        "{name: rome, hparams: {layer: 1}}", "{name: memit, hparams: {layers: [1, 2]}}",
        "{name: alphaedit, hparams: {layers: [1, 2]}}", "grace", "wise", "gradient_ascent", "gradient_difference",
        "kl", "dpo", "npo", "simnpo", "idk", "{name: rmu, hparams: {steer_layer: 2}}")))
    check_cells(cells[:1])  # the skeleton's first build imports the model classes
    started = time.perf_counter()
    check_cells(cells)
    assert (time.perf_counter() - started) / len(cells) < 0.2
    skeleton = model_skeleton(cells[0].model)
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}


def test_a_model_whose_config_cannot_be_read_is_named(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(E2UError, match=r"model '.*broken': could not read its config from local"):
        model_skeleton(str(tmp_path / "broken"))


def test_study_run_stops_on_a_faulty_cell_before_the_first_cell(tmp_path, capsys):
    from e2u.cli import main

    tiny_tofu_cells(tmp_path, "  - {name: rome, hparams: {v_lr: fast}}\n")
    code = main(["study", "run", str(tmp_path / "study.yaml"), "--results", str(tmp_path / "results"),
                 "--book", str(tmp_path / "book"), "--sequential"])
    assert code != 0 and "rome: v_lr: expected float, got 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
