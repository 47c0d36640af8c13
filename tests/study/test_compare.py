"""`e2u compare`: equal per-item numbers pass, a changed number, string or item fails with its place named."""

import json

from e2u.cli import main
from e2u.study.compare import compare_results


def _result(probability=0.25, generated="I do not know", n_items=2):
    items = [{"generated": generated, "probability": probability, "refusal": True} for _ in range(n_items)]
    return {"key": "k", "timings_s": {"unlearn": 1.0}, "before": {"forget": items}, "after": {"forget": items},
            "summary": {"after": {"forget": {"probability": probability}}}}


def _write(root, result, name="pretrained/rome-seed0.json"):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_equal_results_within_the_tolerance_pass_and_timings_are_not_compared(tmp_path, capsys):
    _write(tmp_path / "a", _result())
    other = _result(probability=0.25 + 4e-7)
    other["timings_s"] = {"unlearn": 99.0}
    _write(tmp_path / "b", other)
    (found,) = compare_results(tmp_path / "a", tmp_path / "b", 1e-6)
    assert found.differences == [] and abs(found.largest - 4e-7) < 1e-12
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "1 cells, 0 differ" in capsys.readouterr().out


def test_a_changed_number_string_or_item_count_is_named(tmp_path):
    _write(tmp_path / "a", _result())
    _write(tmp_path / "b", _result(probability=0.26))
    _write(tmp_path / "c", _result(generated="Paris"))
    _write(tmp_path / "d", _result(n_items=3))
    assert any("before/forget[0]/probability: 0.25 vs 0.26" in d
               for d in compare_results(tmp_path / "a", tmp_path / "b")[0].differences)
    assert any("after/forget[1]/generated: 'I do not know' vs 'Paris'" in d
               for d in compare_results(tmp_path / "a", tmp_path / "c")[0].differences)
    assert any("2 items vs 3" in d for d in compare_results(tmp_path / "a", tmp_path / "d")[0].differences)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1


def test_a_missing_cell_or_directory_is_reported(tmp_path, capsys):
    _write(tmp_path / "a", _result())
    (tmp_path / "b").mkdir()
    assert compare_results(tmp_path / "a", tmp_path / "b")[0].differences[0].startswith("missing in")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert "not a directory of result files" in capsys.readouterr().err
