"""Every method runs on every file-based and generated data source through one study file (issue 4):
TOFU and real-world directories in their formats, and the fictional authors with finetuned target and
retain models. (`probe` asks the model under study what it knows, so a random model has nothing to
offer it; it runs on the embedded model in test_probe.py.)"""

import pytest
from conftest import saved_tiny_model
from test_loaders import realworld_dir, tofu_dir

from e2u.cell.run import run_cell
from e2u.methods import METHODS
from e2u.study.grid import load_study

TINY_HPARAMS = {
    "rome": "{layer: 1, n_context_templates: 0, v_num_grad_steps: 2, mom2_n_tokens: 300, mom2_corpus_texts: 4}",
    "memit": "{layers: [1, 2], n_context_templates: 0, v_num_grad_steps: 2, mom2_n_tokens: 300, mom2_corpus_texts: 4}",
    "alphaedit": "{layers: [1, 2], n_context_templates: 0, v_num_grad_steps: 2, mom2_n_tokens: 300, mom2_corpus_texts: 4}",
    "grace": "{layer: 2, n_iter: 3, max_retain_routing: 1.0}",
    "wise": "{layer: 2, n_iter: 3, save_freq: 1, merge_freq: 2, max_retain_routing: 1.0}",
    **{name: "{epochs: 1, batch_size: 2, lr: 1.0e-3" + (", steer_layer: 2}" if name == "rmu" else "}")
       for name, method in METHODS.items() if method.kind == "unlearning"},
}


@pytest.mark.slow
def test_every_method_runs_on_tofu_realworld_and_fictional_from_one_study(tmp_path):
    assert set(TINY_HPARAMS) == set(METHODS), "a new method needs its tiny hyper-parameters here"
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: every\nmodel: {saved_tiny_model(tmp_path)}\nevaluation: {{max_new_tokens: 3, batch_size: 8}}\nsettings:\n"
        f"  - {{name: tofu, data: {{source: tofu, path: {tofu_dir(tmp_path)}, forget_split: forget01}}}}\n"
        f"  - {{name: realworld, data: {{source: realworld, path: {realworld_dir(tmp_path)}}}}}\n"
        "  - {name: fictional, data: {source: fictional, n_authors: 2, retain_eval: 4},"
        " finetune: {train_layers: 2, epochs: 1}}\n"
        "methods:\n" + "".join(f"  - {{name: {m}, hparams: {hp}}}\n" for m, hp in TINY_HPARAMS.items())
    )
    cells = load_study(study).cells
    assert {(c.setting, c.method) for c in cells} == {(s, m) for s in ("tofu", "realworld", "fictional") for m in METHODS}
    changed_layers = {"rome": {"1"}, "memit": {"1", "2"}, "alphaedit": {"1", "2"}, "rmu": {"0", "1", "2"},
                      **{m: {"0", "1", "2", "3"} for m in METHODS if METHODS[m].kind == "unlearning" and m != "rmu"}}
    for cell in cells:
        result = run_cell(cell)
        assert result["summary"]["after"]["forget"]["n"] == len(result["after"]["forget"]) > 0, cell.cell_id
        moved = [abs(a["probability"] / b["probability"] - 1)  # evaluation is deterministic: a no-op gives 0
                 for a, b in zip(result["after"]["forget"], result["before"]["forget"])]
        assert max(moved) > 1e-4, (cell.cell_id, moved)
        if result["change"]["kind"] == "adaptor":  # GRACE, WISE: a memory at block 2, its routing per split
            assert result["change"]["site"] == "model.layers.2.mlp.down_proj"
            assert result["routing"]["forget"]["prompts"] == len(result["after"]["forget"]), cell.cell_id
            continue
        # the method changed the matrices it should, and what the model says about the forget questions
        norms = result["change"]["norm_by_layer"]
        assert changed_layers[cell.method] <= {layer for layer, norm in norms.items() if norm > 0}, (cell.cell_id, norms)
        if METHODS[cell.method].kind == "editing" or cell.method == "rmu":
            assert set(norms) == changed_layers[cell.method], (cell.cell_id, norms)
        assert "forget_efficacy" in result["aggregates"]["after"], cell.cell_id
        if cell.setting == "fictional":
            assert "forget_quality" in result["aggregates"]["after"] and result["models"]["retain"]
