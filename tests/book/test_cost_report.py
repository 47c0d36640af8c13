"""The cost chapter's tables and figures on synthetic result, stages, scaling and GPU-check files."""

import json

import matplotlib.figure
import pytest

from e2u.book import cost
from e2u.study.stages import record_stage


def result(setting, cell, seconds, device="cpu", **extra):
    return {"params": {"setting": setting, "method": cell.split("-")[0]}, "cell_id": cell, "device": device,
            "method_title": cell.upper(), "log": {"steps": 3},
            "timings_s": dict(zip(("load", "evaluate_before", "unlearn", "evaluate_after"), seconds)), **extra}


RESULTS = [result("pretrained", "rome-seed0", (2.0, 10.0, 30.0, 8.0), peak_gpu_memory_gb=None),
           result("finetuned", "ga-seed0", (1.0, 0.5, 12.0, 7.5), peak_memory_gb=1.25, peak_gpu_memory_gb=None)]


def point(method, title, family, n, seconds, peak=1.0):
    return {"key": "k", "point": {"model": "m", "method": method, "n_forget": n, "seed": 0}, "method_title": title,
            "family": family, "device": "cpu", "timings_s": {"load": 1.0, "unlearn": seconds},
            "edits": n if family != "training" else None, "steps": 5 * n, "peak_memory_gb": peak}


POINTS = [point(m, t, f, n, s(n)) for m, t, f, s in (("rome", "ROME", "sequential editing", lambda n: 6.0 * n),
                                                      ("gradient_ascent", "Gradient ascent", "training", lambda n: 0.1 * n * n))
          for n in (10, 20, 40)]


def test_the_cell_timings_table_has_one_row_per_cell_and_their_total():
    table = cost.cell_timings_table(RESULTS)
    assert list(table.index) == ["pretrained/rome-seed0", "finetuned/ga-seed0"]
    assert table.loc["pretrained/rome-seed0", "total"] == 50.0 and table.loc["finetuned/ga-seed0", "unlearn"] == 12.0
    assert cost.cell_timings_table([]).empty


def test_the_stage_figure_stacks_four_stages_per_cell_with_the_cells_as_labels():
    figure = cost.stage_times_figure(RESULTS)
    assert isinstance(figure, matplotlib.figure.Figure)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["pretrained/rome-seed0", "finetuned/ga-seed0"]
    bars = ax.patches
    assert len(bars) == 8
    # the last stage of the first cell ends at the cell's total
    assert max(b.get_x() + b.get_width() for b in bars if abs(b.get_y() + b.get_height() / 2) < 0.5) == pytest.approx(50.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["load", "evaluate before", "unlearn", "evaluate after"]


def test_peak_memory_prefers_the_process_peak_and_shows_both_fields_where_recorded():
    assert cost.peak_memory_of(RESULTS[1]) == 1.25
    assert cost.peak_memory_of({"peak_gpu_memory_gb": 3.5}) == 3.5
    assert cost.peak_memory_of({}) is None
    table = cost.peak_memory_table(RESULTS)
    assert list(table.index) == ["pretrained/rome-seed0", "finetuned/ga-seed0"]
    assert table.loc["finetuned/ga-seed0", "peak memory GiB (process)"] == 1.25
    assert cost.peak_memory_note(RESULTS) == ""
    assert "No peak memory was recorded" in cost.peak_memory_note(RESULTS[:1])


def test_the_stages_of_make_book_come_from_the_stages_file(tmp_path):
    record_stage(tmp_path, "s", "study", 600.0)
    record_stage(tmp_path, "s", "install", 60.0)
    table = cost.study_stages_table(tmp_path / "s", "s")
    assert list(table.index) == ["install", "study"] and table.loc["study", "minutes"] == 10.0
    assert cost.study_stages_table(tmp_path / "t", "t").data == "No stage timings recorded yet."


def test_the_growth_exponent_is_one_for_linear_and_two_for_quadratic_cost():
    rome = [p for p in POINTS if p["point"]["method"] == "rome"]
    ga = [p for p in POINTS if p["point"]["method"] == "gradient_ascent"]
    assert cost.growth_exponent(rome) == pytest.approx(1.0)
    assert cost.growth_exponent(ga) == pytest.approx(2.0)
    assert cost.growth_exponent(rome[:1]) is None


def test_the_scaling_table_figure_and_sentences_come_from_the_points():
    table = cost.scaling_table(POINTS)
    assert len(table) == 6 and set(table["method"]) == {"ROME", "Gradient ascent"}
    assert table.loc[(table.method == "ROME") & (table.n_forget == 40), "seconds per question"].item() == 6.0
    figure = cost.scaling_figure(POINTS)
    assert isinstance(figure, matplotlib.figure.Figure)
    time_ax = figure.axes[0]
    assert time_ax.get_yscale() == "log"  # 10 s to 240 s: more than a factor of ten
    assert [line.get_label() for line in time_ax.get_lines()] == ["ROME (sequential editing)", "Gradient ascent (training)"]
    text = cost.scaling_markdown(POINTS)
    assert "**ROME (sequential editing)**: 60 s for 10 forget questions, 240 s for 40: ×4.0 the time" in text
    assert "n^2.00" in text


def test_without_scaling_files_the_chapter_says_how_to_make_them(tmp_path):
    assert cost.load_scaling(tmp_path / "s") == []
    assert "add `scaling: {}` to the study file" in cost.scaling_markdown([])


def test_scaling_files_are_read_from_the_studys_scaling_folder_skipping_unreadable_ones(tmp_path):
    folder = tmp_path / "s" / "scaling"
    folder.mkdir(parents=True)
    for p in POINTS[:2]:
        (folder / f"{p['point']['method']}-n{p['point']['n_forget']}-seed0.json").write_text(json.dumps(p))
    (folder / "broken.json").write_text('{"key": ')
    assert [p["point"]["n_forget"] for p in cost.load_scaling(tmp_path / "s")] == [10, 20]


def test_without_a_gpu_check_file_the_chapter_names_the_command_that_makes_one(tmp_path):
    assert cost.gpu_check_section(tmp_path / "s") is None
    text = cost.gpu_check_markdown(tmp_path / "s")
    assert text.startswith("No GPU run has been made") and "`bash bench/gpu_check.sh`" in text


@pytest.mark.parametrize("payload", [
    {"device": "NVIDIA H200", "cells": {"pretrained/rome-seed0": {"timings_s": {"load": 1.5, "unlearn": 2.0},
                                                                  "peak_memory_gb": 3.0}}},
    {"device": "NVIDIA H200", "pretrained/rome-seed0": {"load": 1.5, "unlearn": 2.0, "peak_memory_gb": 3.0}},
    {"device": "NVIDIA H200", "torch": "2.5", "dtype": "bfloat16",  # as bench/gpu_check.py writes it
     "cells": {"pretrained/rome-seed0": {"timings_s": {"load": 1.5, "unlearn": 2.0}, "total_s": 3.5,
                                         "peak_memory_gb": 3.0, "peak_memory_kind": "cuda",
                                         "gpu_over_cpu": {"unlearn": 0.05}, "gpu_over_cpu_total": 0.04,
                                         "greedy_answers_in_common": {"same": 28, "of": 30}}},
     "comparison": {"pretrained/rome-seed0.json": {"largest_difference": 0.01, "differences": 3}}},
])
def test_a_gpu_check_file_is_shown_as_one_row_per_cell(tmp_path, payload):
    (tmp_path / "gpu_check.json").write_text(json.dumps(payload))
    table = cost.gpu_check_section(tmp_path / "s")
    assert list(table.index) == ["pretrained/rome-seed0"]
    assert table.loc["pretrained/rome-seed0", "unlearn"] == 2.0 and table.loc["pretrained/rome-seed0", "peak_memory_gb"] == 3.0
    assert "device: NVIDIA H200" in cost.gpu_check_markdown(tmp_path / "s")
    if "cells" in payload and "dtype" in payload:
        assert table.loc["pretrained/rome-seed0", "gpu_over_cpu unlearn"] == 0.05
        assert table.loc["pretrained/rome-seed0", "greedy_answers_in_common same"] == 28


@pytest.mark.slow
@pytest.mark.parametrize("with_scaling", [False, True])
def test_the_cost_chapter_runs_top_to_bottom_on_result_files(tmp_path, with_scaling):
    import papermill

    from e2u.files import SOURCE_ROOT as ROOT

    study = tmp_path / "results" / "s"
    for r in RESULTS:
        (study / r["params"]["setting"]).mkdir(parents=True, exist_ok=True)
        (study / r["params"]["setting"] / f"{r['cell_id']}.json").write_text(json.dumps(r))
    record_stage(tmp_path / "results", "s", "study", 60.0)
    if with_scaling:
        (study / "scaling").mkdir()
        for i, p in enumerate(POINTS):
            (study / "scaling" / f"{i}.json").write_text(json.dumps(p))
    out = tmp_path / "cost.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "cost.ipynb"), str(out), kernel_name="python3",
                               progress_bar=False, parameters={"results_dir": str(study), "study_name": "s"},
                               cwd=str(ROOT / "notebooks"))
    text = out.read_text()
    assert "No GPU run has been made" in text
    assert ("n^2.00" in text) == with_scaling and ("add `scaling: {}`" in text) != with_scaling
