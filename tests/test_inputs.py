"""Bad input stops with one clear line that names the file, field or parameter, and what was expected."""

import json

import pytest

from e2u.cell.params import CellParams
from e2u.data.sources import load_source
from e2u.editing.rome import RomeHParams
from e2u.errors import E2UError
from e2u.hparams import build_hparams
from e2u.model.load import resolve_model
from e2u.study.grid import load_study


def test_unknown_model_name_is_rejected_with_the_accepted_forms():
    with pytest.raises(E2UError, match="unknown model 'not a model'.*smollm2-135m-instruct"):
        resolve_model("not a model")


def test_model_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(E2UError, match="config.json"):
        resolve_model(str(tmp_path))


def test_hub_ids_and_embedded_name_resolve():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    assert resolve_model("SmolLM2-135M-Instruct").kind == "embedded"


def test_missing_study_file_is_named(tmp_path):
    with pytest.raises(E2UError, match="does not exist"):
        load_study(tmp_path / "nope.yaml")


def test_malformed_study_yaml_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmethods: [rome\n")
    with pytest.raises(E2UError, match="bad.yaml: not valid YAML"):
        load_study(path)


def test_unknown_study_field_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmethods: [rome]\nmodle: foo\n")
    with pytest.raises(E2UError, match="unknown field.*modle"):
        load_study(path)


def test_unknown_method_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmethods: [rmoe]\n")
    with pytest.raises(E2UError, match="methods\\[0\\].*unknown method 'rmoe'.*rome"):
        load_study(path)


def test_duplicate_cells_need_labels(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmethods: [rome, rome]\n")
    with pytest.raises(E2UError, match="appear twice"):
        load_study(path)


def test_unknown_hyper_parameter_is_named_with_the_allowed_ones():
    with pytest.raises(E2UError, match="lyer: expected one of the hyper-parameters .*layer"):
        build_hparams(RomeHParams, {"lyer": 3}, "method rome")


def test_reference_names_are_accepted_as_aliases():
    assert build_hparams(RomeHParams, {"layers": 3, "v_steps": 7}, "m").v_num_grad_steps == 7


def test_bad_notebook_parameter_cell_is_named():
    """The unlearn notebook's one parameter, `cell`: a CellParams JSON object."""
    with pytest.raises(E2UError, match=r"parameter cell: unknown field\(s\) \['sed'\]; allowed: .*'seed'"):
        CellParams.from_json('{"method": "rome", "sed": 1}')
    with pytest.raises(E2UError, match="parameter seed: expected a non-negative integer, got '1'"):
        CellParams.from_json('{"seed": "1"}')
    with pytest.raises(E2UError, match="parameter hparams: expected a mapping, got list"):
        CellParams.from_json('{"hparams": [6]}')
    with pytest.raises(E2UError, match="parameter cell: expected a JSON object, got '{method: rome}'"):
        CellParams.from_json("{method: rome}")
    with pytest.raises(E2UError, match="parameter cell: expected a JSON object, got list"):
        CellParams.from_json('["rome"]')
    with pytest.raises(E2UError, match="unknown method 'rmoe'"):
        CellParams.from_json('{"method": "rmoe"}')


def test_cell_parameter_round_trips_and_defaults_what_it_leaves_out():
    cell = CellParams(method="gradient_ascent", label="ga", hparams={"epochs": 1}, seed=2)
    assert CellParams.from_json(cell.to_json()) == cell
    assert CellParams.from_json("{}") == CellParams()


def test_data_file_missing_a_required_field_names_file_line_and_field(tmp_path):
    (tmp_path / "forget.jsonl").write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n"
                                            + json.dumps({"question": "q2?"}) + "\n")
    with pytest.raises(E2UError, match=r"forget.jsonl:2: missing required field 'answer'"):
        load_source("jsonl", str(tmp_path))


def test_data_line_that_is_not_json_is_named(tmp_path):
    (tmp_path / "forget.jsonl").write_text("{not json}\n")
    with pytest.raises(E2UError, match=r"forget.jsonl:1: not valid JSON"):
        load_source("jsonl", str(tmp_path))


def test_embedded_mini_set_has_subjects_inside_questions():
    splits = load_source("mini")
    assert len(splits["forget"]) >= 12 and len(splits["neighbour"]) >= 12
    for records in splits.values():
        for r in records:
            assert r.subject in r.question and r.subject in r.paraphrased_question


def test_settings_list_makes_one_cell_per_setting_and_method(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\nsettings:\n"
        "  - {name: pretrained, data: {source: mini}}\n"
        "  - {name: finetuned, data: {source: fictional, n_authors: 10}}\n"
        "methods:\n  - rome\n  - {name: gradient_ascent, settings: [finetuned]}\n"
    )
    cells = load_study(path).cells
    assert [(c.setting, c.method) for c in cells] == [
        ("pretrained", "rome"), ("finetuned", "rome"), ("finetuned", "gradient_ascent")]
    assert cells[1].data_options == {"seed": 0, "n_authors": 10, "forget_percent": 10, "retain_eval": 40}


def test_unknown_data_option_is_named_with_the_allowed_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nsettings:\n  - {name: f, data: {source: fictional, n_author: 10}}\nmethods: [rome]\n")
    with pytest.raises(E2UError, match=r"settings\[0\].*unknown option.*n_author.*allowed.*n_authors"):
        load_study(path)


def test_method_restricted_to_an_unknown_setting_is_an_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmethods:\n  - {name: rome, settings: [finetuned]}\n")
    with pytest.raises(E2UError, match="unknown setting.*finetuned"):
        load_study(path)


def test_fictional_and_tofu_sources_load_through_the_registry(tmp_path):
    splits = load_source("fictional", options={"n_authors": 10, "forget_percent": 10})
    assert len(splits["forget"]) == 20 and len(splits["retain_train"]) == 180 and len(splits["retain"]) == 40
    assert {r.question for r in splits["retain"]} <= {r.question for r in splits["retain_train"]}
    everything = load_source("fictional", options={"n_authors": 10, "retain_eval": 0})
    assert everything["retain"] == everything["retain_train"]
    with pytest.raises(E2UError, match="TOFU directory .* lacks"):
        load_source("tofu", str(tmp_path), {"forget_split": "forget01"})


def test_cell_keys_cover_the_method_and_shared_code_but_not_other_methods_or_the_book_tables():
    from e2u.methods import method_code_files
    from e2u.provenance import evaluation_code_files

    names = {p.name for p in method_code_files("memit")}
    assert {"memit.py", "keys.py", "batched_values.py", "stats.py", "evaluate.py", "run.py", "rome.yaml"} <= names
    assert not {"rome.py", "alphaedit.py", "report.py", "cli.py"} & names
    # AlphaEdit is MEMIT with its own solve: a change to memit.py reruns AlphaEdit's cells too
    assert {"alphaedit.py", "memit.py"} <= {p.name for p in method_code_files("alphaedit")}
    # the unedited model's evaluation depends on the scoring code, not on any method
    evaluation = {p.name for p in evaluation_code_files()}
    assert {"evaluate.py", "metrics.py", "prompts.py"} <= evaluation
    assert not {"rome.py", "memit.py", "keys.py", "run.py"} & evaluation


def test_book_removes_only_outputs_of_cells_the_study_no_longer_has(tmp_path):
    from e2u.book.build import stale_outputs

    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmethods: [rome]\n")
    study = load_study(path)
    results, book = tmp_path / "results", tmp_path / "book"
    for f in (results / "s/pretrained/rome-seed0.json", results / "s/pretrained/old-seed0.json",
              book / "runs/s/pretrained/rome-seed0.ipynb", book / "runs/s/pretrained/old-seed0.ipynb",
              book / "runs/s/pretrained/.rome-seed0.ipynb.tmp.ipynb", results / "s/stages.json",
              # a current cell's rerun and kept failed notebook stay; an old cell's go with it
              results / "s/pretrained/rome-seed0.rerun-layer-2.json", book / "runs/s/pretrained/rome-seed0.failed.ipynb",
              results / "s/pretrained/old-seed0.rerun-lr-0.5.json", book / "runs/s/pretrained/old-seed0.failed.ipynb"):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
    assert {p.name for p in stale_outputs(study, results, book)} == {
        "old-seed0.json", "old-seed0.ipynb", "old-seed0.rerun-lr-0.5.json", "old-seed0.failed.ipynb"}


def test_stage_times_are_recorded_and_shown_install_first(tmp_path):
    from e2u.book.cost import stages_table
    from e2u.study.stages import read_stages, record_stage

    record_stage(tmp_path, "s", "study", 1200.0)
    record_stage(tmp_path, "s", "prepare", 300.0)
    record_stage(tmp_path, "s", "install", 90.0)
    stages = read_stages(tmp_path, "s")
    assert stages == {"study": 1200.0, "prepare": 300.0, "install": 90.0}
    table = stages_table(stages)
    assert list(table.index) == ["install", "prepare", "study"] and table.loc["study", "minutes"] == 20.0
    (tmp_path / "s" / "stages.json").write_text("not json")
    assert read_stages(tmp_path, "s") == {}
