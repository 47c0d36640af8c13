"""The finetuned setting end to end on a tiny model: `fictional` cells unlearn the finetuned target model,
and the retain model gives forget quality and its own row in the book's table."""

import pytest
from conftest import make_tiny_llama

from e2u.book import paper_tables, report
from e2u.cell.params import CellParams
from e2u.cell.run import run_cell
from e2u.cell.setting_models import setting_models


@pytest.fixture
def tiny_base(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return str(tmp_path / "base")


def test_fictional_cell_unlearns_the_finetuned_target_and_compares_with_the_retain_model(tiny_base):
    options = {"n_authors": 2, "forget_percent": 10, "retain_eval": 5, "seed": 0}
    params = CellParams(model=tiny_base, setting="finetuned", data_source="fictional", data_options=options,
                        finetune={"train_layers": 2, "epochs": 2},
                        method="gradient_ascent", hparams={"epochs": 1, "batch_size": 4},
                        max_new_tokens=4, batch_size=8)
    models = setting_models(tiny_base, "fictional", params.data_options, finetune=params.finetune)
    assert models.target != tiny_base and models.retain not in (None, models.target)
    assert set(models.info) == {"target", "retain"}

    result = run_cell(params)
    assert result["models"]["target"] == models.target and result["models"]["retain"] == models.retain
    assert {"forget", "retain", "real_authors", "world_facts"} <= set(result["after"])
    assert "retain_train" not in result["after"] and result["summary"]["after"]["retain"]["n"] == 5
    assert result["aggregates"]["retain_model"]["forget_quality"]["value"] == pytest.approx(1.0)
    quality = result["aggregates"]["after"]["forget_quality"]["value"]
    assert 0.0 <= quality <= 1.0

    table = report.suite_table([result], "finetuned")
    assert list(table.index[:2]) == ["before unlearning", "retain model (reference)"]
    assert table.loc["retain model (reference)", ("aggregate", "forget quality")] == pytest.approx(1.0)
    assert set(report.finetuned_models_table([result])["model"]) == {"target", "retain"}


def test_a_named_retain_model_is_used_for_other_sources(tiny_base):
    models = setting_models(tiny_base, "jsonl", {}, retain_model="/somewhere/retain")
    assert (models.target, models.retain) == (tiny_base, "/somewhere/retain")
    assert setting_models(tiny_base, "probe", {}).retain is None


def test_pistol_cell_unlearns_the_lora_finetuned_target_and_reports_the_papers_metrics(tiny_base):
    """The paper's finetuned setting: the target learns every edge through a merged LoRA adapter, the retain
    model every edge but the forget one; the result carries the paper's metrics and the combined score."""
    options = {"seed": 0, "n_edges": 2, "n_independent": 1, "retain_eval": 5}
    finetune = {"epochs": 1, "batch_size": 16, "train_layers": 2}  # over the source's LoRA defaults
    params = CellParams(model=tiny_base, setting="finetuned", data_source="pistol", data_options=options,
                        finetune=finetune, method="gradient_ascent", hparams={"epochs": 1, "batch_size": 4},
                        max_new_tokens=4, batch_size=8)
    models = setting_models(tiny_base, "pistol", params.data_options, finetune=params.finetune)
    assert {info["adapter"] for info in models.info.values()} == {"lora"}
    result = run_cell(params)
    assert {"forget", "forget_paraphrased", "retain", "independent"} <= set(result["after"])
    assert not {"retain_train", "target_train"} & set(result["after"])
    item = result["after"]["forget"][0]
    assert {"rouge1_recall", "answer_probability", "mrr", "top_hit"} <= set(item)
    forget, retain = result["summary"]["after"]["forget"], result["summary"]["after"]["retain"]
    combined = result["aggregates"]["after"]["combined_score"]["value"]
    assert combined == pytest.approx(1 - forget["rouge1_recall"] + retain["rouge1_recall"])
    assert result["data_report"]["paraphrases"]["from_data"] == forget["n"]  # the generator's own paraphrases
    table = paper_tables.paper_table([result], "finetuned")
    assert list(table.index[:2]) == ["before unlearning", "retain model (reference)"]
    assert ("score", "combined") in table.columns
