"""`e2u export`: a study's per-item results as one long table, equal to its result files, written whole or not
at all; a study without results is an error naming its folder."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pandas as pd
import pytest
from conftest import tiny_tofu_cells

from e2u import api
from e2u.cli import main
from e2u.errors import E2UError
from e2u.study.export import COLUMNS, export_table, long_table

PAPER_METRICS = {"rouge1_recall", "rouge_l_recall", "probability", "mrr", "top_hit", "refusal"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The results folder of a one-cell study (gradient ascent on a tiny model, TOFU-style data with perturbed
    answers: some splits have truth ratios, others not), run for real; returns (folder, the result)."""
    from e2u.cell.run import run_cell

    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("E2U_HOME", str(root / "e2u_home"))
        (cell,) = tiny_tofu_cells(root, "  - {name: gradient_ascent, label: ga, hparams: {epochs: 1, batch_size: 2}}\n")
        path = root / "results" / "tiny" / cell.setting / f"{cell.cell_id}.json"
        run_cell(cell, path)
    return root / "results", json.loads(path.read_text())


def _numbers(item: dict) -> set[str]:
    return {k for k, v in item.items() if isinstance(v, (int, float)) and k != "unchanged"}


def test_the_table_has_a_row_per_item_and_metric_with_the_result_files_values(results):
    folder, result = results
    table = long_table(folder, "tiny")
    assert list(table.columns) == list(COLUMNS)
    expected = sum(len(_numbers(item)) for items in result["after"].values() for item in items)
    assert len(table) == expected and set(table.split) == set(result["after"])
    assert PAPER_METRICS <= set(table.metric) and "truth_ratio" in set(table.metric)
    assert {"unchanged", "generated"}.isdisjoint(set(table.metric))
    for row in table.itertuples():
        after, before = result["after"][row.split][row.item], result["before"][row.split][row.item]
        assert (row.study, row.setting, row.method, row.label, row.seed) == ("tiny", "tofu", "gradient_ascent", "ga", 0)
        assert (row.question, row.truth, row.answer) == (after["question"], after["reference"], after["generated"])
        assert row.after == float(after[row.metric]) and row.before == float(before[row.metric])


def test_the_python_api_reads_the_same_table(results):
    folder, _ = results
    pd.testing.assert_frame_equal(api.read_results(folder, "tiny"), long_table(folder, "tiny"))


def test_csv_and_parquet_read_back_equal_to_the_table(results, tmp_path, capsys):
    folder, _ = results
    table = long_table(folder, "tiny")
    for format in ("csv", "parquet"):
        out = tmp_path / f"out.{format}"
        assert main(["export", "tiny", "--results", str(folder), "--format", format, "--out", str(out)]) == 0
        back = pd.read_csv(out, keep_default_na=False, na_values=[""]) if format == "csv" else pd.read_parquet(out)
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
        assert f"{len(table)} rows of study tiny written to {out}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet"]  # no temporary file left


def test_a_study_without_results_is_an_error_naming_its_folder_and_nothing_is_written(tmp_path, capsys):
    (tmp_path / "results" / "empty" / "pretrained").mkdir(parents=True)
    out = tmp_path / "out.csv"
    out.write_text("an earlier export\n")
    with pytest.raises(E2UError, match=rf"no result files .* for study 'empty' in {tmp_path / 'results' / 'empty'}"):
        long_table(tmp_path / "results", "empty")
    assert main(["export", "empty", "--results", str(tmp_path / "results"), "--out", str(out)]) == 2
    assert "e2u: error: export: no result files" in capsys.readouterr().err
    assert out.read_text() == "an earlier export\n"


def test_a_failed_write_leaves_neither_a_half_file_nor_a_temporary(results, tmp_path, monkeypatch):
    folder, _ = results

    def half_then_fail(self, path, **_):
        with open(path, "w") as handle:
            handle.write("study,setting\n")
        raise OSError("no space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="no space left"):
        export_table(folder, "tiny", tmp_path / "out.csv", "csv")
    assert not list(tmp_path.iterdir())


def test_parquet_without_pyarrow_says_how_to_enable_it(results, tmp_path, monkeypatch):
    folder, _ = results
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(E2UError, match=r"out.parquet: parquet needs pyarrow, .*`pip install pyarrow` enables it"):
        export_table(folder, "tiny", tmp_path / "out.parquet", "parquet")
    assert not list(tmp_path.iterdir())


def test_reruns_are_left_out_unless_asked_for(results, tmp_path):
    folder, result = results
    copy = tmp_path / "results"
    shutil.copytree(folder, copy)
    rerun = {**result, "params": {**result["params"], "hparams": {"lr": 1e-5}}}
    rerun["after"] = {split: [{**item, "refusal": not item["refusal"]} for item in items]
                      for split, items in result["after"].items()}
    (copy / "tiny" / "tofu" / "ga-seed0.rerun-lr-1e-05.json").write_text(json.dumps(rerun))
    own, both = long_table(copy, "tiny"), long_table(copy, "tiny", variants=True)
    assert set(own.label) == {"ga"} and len(both) == 2 * len(own)
    flipped = both[(both.label == "ga.rerun-lr-1e-05") & (both.metric == "refusal")]
    assert flipped.after.tolist() == [1.0 - v for v in own[own.metric == "refusal"].after]
    assert not any(math.isnan(v) for v in both.after)
