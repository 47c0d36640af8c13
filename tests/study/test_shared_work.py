"""The work cells share: planned once per setting, the context templates sampled once and cached."""

import pytest

from e2u.cell.params import CellParams
from e2u.editing.keys import context_templates
from e2u.editing.locate import LocateHParams, shared_context_templates
from e2u.study.shared_work import plan_shared_steps, step_for_cell


def test_context_templates_are_sampled_once_and_read_back_the_same(tiny_llama, monkeypatch):
    model, tokenizer = tiny_llama
    hp = LocateHParams(n_context_templates=3, context_template_length=4, seed=2)
    first = shared_context_templates(model, tokenizer, hp)
    assert first == context_templates(model, tokenizer, 3, 4, 2) and len(first) == 4

    def no_sampling(*args, **kwargs):
        raise AssertionError("the cached templates were sampled again")

    monkeypatch.setattr(model, "generate", no_sampling)
    assert shared_context_templates(model, tokenizer, hp) == first
    with pytest.raises(AssertionError, match="sampled again"):  # another seed is another cache entry
        shared_context_templates(model, tokenizer, LocateHParams(n_context_templates=3, context_template_length=4,
                                                                 seed=3))


def test_each_setting_is_prepared_once_and_only_editor_settings_need_statistics():
    cells = [CellParams(setting="a", data_source="mini", method="rome"),
             CellParams(setting="a", data_source="mini", method="memit", seed=1),
             CellParams(setting="b", data_source="fictional", method="gradient_ascent")]
    steps = plan_shared_steps(cells)
    names = {s.role: s.name.removeprefix("finetune ") for s in steps if s.kind == "finetune"}
    assert [(s.kind, s.name, s.after) for s in steps] == [
        ("model", "model smollm2-135m-instruct", ()),
        ("finetune", f"finetune {names['target']}", ("model smollm2-135m-instruct",)),
        ("finetune", f"finetune {names['retain']}", ("model smollm2-135m-instruct",)),
        ("setting", "setting a", ("model smollm2-135m-instruct",)),
        ("statistics", "statistics a", ("setting a",)),
        ("setting", "setting b", (f"finetune {names['target']}", f"finetune {names['retain']}"))]
    assert [step_for_cell(steps, c).name for c in cells] == ["statistics a", "statistics a", "setting b"]
    assert len(steps[4].cells) == 2  # one pass over the union of both editors' layers


def test_memory_editors_wait_for_their_setting_only_and_stay_out_of_the_statistics_step():
    """GRACE and WISE need no context templates or key statistics: a statistics step built with them failed on
    GRACE's missing `n_context_templates` (and took every editor of the setting down with it)."""
    cells = [CellParams(setting="a", data_source="mini", method="rome"),
             CellParams(setting="a", data_source="mini", method="grace"),
             CellParams(setting="a", data_source="mini", method="wise"),
             CellParams(setting="b", data_source="fictional", method="grace")]
    steps = plan_shared_steps(cells)
    assert [s.name for s in steps if s.kind != "finetune"] == ["model smollm2-135m-instruct", "setting a",
                                                               "statistics a", "setting b"]
    assert [c.method for c in steps[4].cells] == ["rome"]
    assert [step_for_cell(steps, c).name for c in cells] == ["statistics a", "setting a", "setting a", "setting b"]


def test_seeds_of_one_data_set_wait_for_the_same_two_finetuned_models_and_share_statistics_in_turn():
    """Three PISTOL draws of one graph: one target and one retain model (two steps, side by side), every setting
    after both; the settings of one model, and their statistics steps, one after another, so that no two
    workers compute the same probe or key statistics."""
    cells = [CellParams(setting="f", data_source="pistol", method="rome",
                        data_options={"forget_edges": ["A_B"], "forget_questions": 4, "forget_sample": seed}, seed=seed)
             for seed in range(3)] + \
            [CellParams(setting="p", data_source="factual", method="memit", data_options={"seed": seed}, seed=seed)
             for seed in range(2)]
    steps = plan_shared_steps(cells)
    finetunes = [s for s in steps if s.kind == "finetune"]
    assert sorted(s.role for s in finetunes) == ["retain", "target"]
    assert all(len(s.cells) == 3 for s in finetunes)
    after = {s.name: s.after for s in steps}
    assert after["setting f"] == tuple(s.name for s in finetunes)
    assert after["setting f #1"] == tuple(s.name for s in finetunes) + ("setting f",)
    assert after["statistics f #2"] == ("setting f #2", "statistics f #1")
    assert after["setting p #4"] == ("setting p",) and after["statistics p #4"] == ("setting p #4", "statistics p")
    assert [step_for_cell(steps, c).name for c in cells] == ["statistics f", "statistics f #1", "statistics f #2",
                                                            "statistics p", "statistics p #4"]
