"""Every study file shipped in studies/ parses: each cell's parameters validate without a model or the hub."""

from __future__ import annotations

import pytest

from e2u.study import ROOT, load_study

STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_validates(path):
    study = load_study(path)
    assert study.cells and study.name == path.stem


def test_the_default_study_follows_the_papers_protocol_and_the_second_study_the_earlier_one():
    default = load_study(ROOT / "studies" / "default.yaml")
    assert {c.setting: c.data_source for c in default.cells} == {"pretrained": "factual", "finetuned": "pistol"}
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
