"""Every study file shipped in studies/ parses: each cell's parameters validate without a model or the hub."""

from __future__ import annotations

import pytest

from e2u.files import SOURCE_ROOT as ROOT
from e2u.study.grid import load_study

STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_validates(path):
    study = load_study(path)
    assert study.cells and study.name == path.stem


def test_the_default_study_follows_the_papers_protocol_and_the_second_study_the_earlier_one():
    default = load_study(ROOT / "studies" / "default.yaml")
    assert {c.setting: c.data_source for c in default.cells} == {"pretrained": "factual", "finetuned": "pistol",
                                                                 "finetuned-n20": "pistol"}
    second = load_study(ROOT / "studies" / "closer-look.yaml")
    assert {c.setting: c.data_source for c in second.cells} == {"pretrained": "probe", "finetuned": "fictional"}


def test_the_paper_scale_study_runs_the_papers_three_models_on_the_hubs_data():
    study = load_study(ROOT / "studies" / "paper-scale.yaml")
    assert {c.model for c in study.cells} == {"meta-llama/Llama-2-7b-chat-hf", "mistralai/Mistral-7B-Instruct-v0.2",
                                              "meta-llama/Llama-3.1-8B-Instruct"}
    assert {c.data_source for c in study.cells} == {"factual", "pistol"}
    assert all(c.data_options["hub"] for c in study.cells)
    assert all(c.finetune["adapter"] == "lora" for c in study.cells if c.data_source == "pistol")
    assert {c.seed for c in study.cells} == {0, 1, 2}


def test_a_method_entry_runs_a_subset_of_the_study_seeds_and_names_a_seed_outside_them(tmp_path):
    from e2u.errors import E2UError

    def study(entry_seeds):
        path = tmp_path / "s.yaml"
        path.write_text("name: s\ndata: {source: mini}\nseeds: [0, 1, 2]\n"
                        f"methods:\n  - rome\n  - {{name: npo, seeds: {entry_seeds}}}\n")
        return load_study(path)

    cells = study("[0]").cells
    assert sorted(c.seed for c in cells if c.method == "rome") == [0, 1, 2]
    assert [c.seed for c in cells if c.method == "npo"] == [0]
    with pytest.raises(E2UError, match=r"methods\[1\]\.seeds must be a non-empty list of the study's seeds \[0, 1, 2\], got \[5\]"):
        study("[5]")


def test_the_default_study_runs_the_papers_nine_methods_in_both_settings_over_three_seeds_with_the_recipes():
    from e2u.book.claim_tests import EDITORS, PAPER_BASELINES

    cells = load_study(ROOT / "studies" / "default.yaml").cells
    plain = [c for c in cells if not c.merge_group and c.chunks == 1 and c.refusal == "fixed"]
    for method in (*EDITORS, *PAPER_BASELINES):
        for setting in ("pretrained", "finetuned"):
            assert sorted(c.seed for c in plain if c.method == method and c.setting == setting) == [0, 1, 2], method
    assert {c.method for c in cells if c.chunks > 1} == {*EDITORS, *PAPER_BASELINES}
    assert {c.method for c in cells if c.merge_group} == {"rome", "memit"}
    assert {c.method for c in cells if c.refusal == "self"} == {"alphaedit", "wise"}
    assert all((c.data_options.get("n_forget") or c.data_options.get("forget_questions") or 20) >= 10 for c in cells)


def test_a_method_entry_reads_an_easyedit_file_beside_the_study_and_its_own_hparams_win(tmp_path):
    from e2u.errors import E2UError

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "grace.yaml").write_text(
        'alg_name: "GRACE"\ninner_params:\n- model.layers[25].mlp.down_proj.weight\neps: 2.0\nn_iter: 30\n'
        "edit_lr: 1.0\nmodel_name: ./hugging_cache/llama-2-7b\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndata: {source: mini}\nmethods:\n  - rome\n"
                    "  - {name: grace, easyedit: configs/grace.yaml, hparams: {n_iter: 5}}\n")
    (cell,) = [c for c in load_study(path).cells if c.method == "grace"]
    assert cell.hparams == {"layer": 25, "eps": 2.0, "n_iter": 5, "edit_lr": 1.0}
    (rome,) = [c for c in load_study(path).cells if c.method == "rome"]
    assert rome.hparams == {}
    path.write_text("name: s\ndata: {source: mini}\nmethods:\n  - {name: rome, easyedit: configs/grace.yaml}\n")
    with pytest.raises(E2UError, match=r"methods\[0\]: EasyEdit file .*grace.yaml: alg_name 'GRACE' is grace's"):
        load_study(path)
