"""The scaling points: the study file's `scaling:` mapping, their keys, and measuring one on a tiny model."""

import json

import pytest
from conftest import make_tiny_llama

from e2u.data.sources import load_source
from e2u.errors import E2UError
from e2u.study.scaling import (
    DEFAULT_METHODS,
    DEFAULT_N_FORGET,
    ScalingPoint,
    fictional_options,
    is_measured,
    load_scaling,
    measure_in_subprocess,
    measure_point,
    scaling_points,
    warm_shared_work,
)

STUDY = {"name": "s", "methods": ["rome", {"name": "gradient_ascent", "label": "ga", "hparams": {"lr": 3.0e-5}}],
         "seeds": [4, 5]}


def test_a_study_without_scaling_or_with_scaling_false_has_no_points():
    assert scaling_points(STUDY, "m", "s.yaml") == []
    assert scaling_points({**STUDY, "scaling": False}, "m", "s.yaml") == []


def test_an_empty_scaling_mapping_is_the_default_grid_with_the_studys_hparams_and_first_seed():
    points = scaling_points({**STUDY, "scaling": {}}, "m", "s.yaml")
    assert [(p.method, p.n_forget) for p in points] == [(m, n) for m in DEFAULT_METHODS for n in DEFAULT_N_FORGET]
    assert {p.model for p in points} == {"m"} and {p.seed for p in points} == {4}
    assert next(p for p in points if p.method == "gradient_ascent").hparams == {"lr": 3.0e-5}
    assert next(p for p in points if p.method == "memit").hparams == {}


@pytest.mark.parametrize("scaling, expected", [
    ([10, 20], "expected a mapping"),
    ({"sizes": [10]}, "unknown field(s) ['sizes']"),
    ({"methods": ["rome", "lora-magic"]}, "unknown method 'lora-magic'"),
    ({"methods": []}, "scaling'.methods: expected a non-empty list"),
    ({"methods": ["rome", "rome"]}, "appears twice"),
    ({"n_forget": [0, 10]}, "scaling'.n_forget: expected a non-empty list of distinct integers from 1 to 800"),
    ({"n_forget": [10, "20"]}, "n_forget"),
    ({"n_forget": [10, 10]}, "n_forget"),
    ({"n_forget": [True]}, "n_forget"),
])
def test_a_bad_scaling_mapping_is_an_error_naming_the_file_and_the_field(scaling, expected):
    with pytest.raises(E2UError) as error:
        scaling_points({**STUDY, "scaling": scaling}, "m", "studies/x.yaml")
    assert "study file studies/x.yaml: field 'scaling'" in str(error.value) and expected in str(error.value)


@pytest.mark.parametrize("n", [1, 40, 41, 100])
def test_the_fictional_options_give_at_least_n_forget_questions(n):
    assert len(load_source("fictional", None, fictional_options(n))["forget"]) >= n


def test_the_key_depends_on_every_field_and_the_file_name_on_method_size_and_seed():
    point = ScalingPoint("m", "rome", 10, fictional_options(10))
    assert point.key == ScalingPoint("m", "rome", 10, fictional_options(10)).key
    others = [ScalingPoint("m", "rome", 20, fictional_options(10)), ScalingPoint("m2", "rome", 10, fictional_options(10)),
              ScalingPoint("m", "memit", 10, fictional_options(10)), ScalingPoint("m", "rome", 10, fictional_options(10), 1),
              ScalingPoint("m", "rome", 10, fictional_options(10), hparams={"layer": 3})]
    assert len({point.key} | {p.key for p in others}) == 6
    assert point.file_name == "rome-n10-seed0.json"
    assert ScalingPoint.from_json(point.to_json()) == point
    with pytest.raises(E2UError, match=r"unknown field\(s\) \['colour'\]"):
        ScalingPoint.from_json('{"model": "m", "method": "rome", "n_forget": 1, "colour": "red"}')


def test_a_measured_point_writes_its_key_time_steps_and_peak_memory(tmp_path):
    point = ScalingPoint("tiny", "gradient_ascent", 3, fictional_options(3), hparams={"epochs": 2, "batch_size": 2})
    path = tmp_path / "scaling" / point.file_name
    result = measure_point(point, path, load=make_tiny_llama)
    assert json.loads(path.read_text()) == result
    assert result["key"] == point.key and result["point"]["n_forget"] == 3
    assert result["steps"] == 4 and result["edits"] is None  # 2 epochs x ceil(3 / 2) batches
    assert result["timings_s"]["unlearn"] > 0 and result["peak_memory_gb"] > 0
    assert result["family"] == "training" and result["method_title"] == "GA"
    assert is_measured(path, point.key)
    assert load_scaling(tmp_path.parent, tmp_path.name) == [result]


def test_an_editor_point_counts_one_edit_per_forget_question(tmp_path):
    hparams = {"layer": 1, "n_context_templates": 0, "v_num_grad_steps": 2, "mom2_n_tokens": 300, "mom2_corpus_texts": 4}
    point = ScalingPoint("tiny", "rome", 2, fictional_options(2), hparams=hparams)
    result = measure_point(point, None, load=make_tiny_llama)
    assert result["edits"] == 2 and 2 <= result["steps"] <= 4


def test_a_partial_or_foreign_file_is_not_a_measurement(tmp_path):
    path = tmp_path / "p.json"
    assert not is_measured(path, "k")
    path.write_text('{"key": "k", "timings_s": {"unl')
    assert not is_measured(path, "k")
    path.write_text('{"key": "other", "timings_s": {}}')
    assert not is_measured(path, "k")
    path.write_text('["k"]')
    assert not is_measured(path, "k")
    path.write_text('{"key": "k", "timings_s": {}}')
    assert is_measured(path, "k")


@pytest.mark.slow
def test_a_point_measured_in_a_subprocess_writes_its_file_and_a_failure_names_the_childs_error(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    point = ScalingPoint(str(tmp_path / "model"), "gradient_ascent", 2, fictional_options(2),
                         hparams={"epochs": 1, "batch_size": 2})
    result = measure_in_subprocess(point, tmp_path / "out" / point.file_name)
    assert result["key"] == point.key and result["steps"] == 1 and is_measured(tmp_path / "out" / point.file_name, point.key)

    broken = ScalingPoint(str(tmp_path / "no-such-model"), "gradient_ascent", 2, fictional_options(2))
    with pytest.raises(E2UError, match=r"gradient_ascent-n2-seed0.json: the measure process failed \(exit 2\).*unknown model"):
        measure_in_subprocess(broken, tmp_path / "out" / "broken.json")
    assert not (tmp_path / "out" / "broken.json").exists()


def test_warming_an_editor_point_caches_its_statistics_so_the_measured_run_computes_none(monkeypatch):
    from e2u.editing import stats

    hparams = {"layer": 1, "n_context_templates": 1, "v_num_grad_steps": 1, "mom2_n_tokens": 300, "mom2_corpus_texts": 4}
    point = ScalingPoint("tiny", "rome", 1, fictional_options(1), hparams=hparams)
    assert warm_shared_work(point, load=make_tiny_llama) > 0
    computed = []
    monkeypatch.setattr(stats, "_accumulate", lambda *args: computed.append(args) or {})
    measure_point(point, None, load=make_tiny_llama)
    assert computed == []
    assert warm_shared_work(ScalingPoint("tiny", "gradient_ascent", 1, fictional_options(1))) == 0.0
