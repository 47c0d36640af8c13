"""Benchmarks' numbers in the book's prose: written by the benchmark, read by the `measured` role, and a build
error when the file or the key is missing (no number in a chapter is typed by hand)."""

import json

import pytest

from e2u.book.measured import FOLDER, measured_value, write_measurement
from e2u.errors import E2UError


def test_a_written_measurement_is_read_back_formatted_with_its_source(tmp_path):
    path = write_measurement("leak", {"layers": {"5": {"with_c": 0.87312}}, "edits": 12, "rows": [3, 4]}, tmp_path)
    assert path == tmp_path / FOLDER / "leak.json"
    record = json.loads(path.read_text())
    assert record["values"]["edits"] == 12 and record["command"].startswith("python ") and record["packages"]["torch"]
    assert measured_value(tmp_path, "leak:layers.5.with_c|.2f")[0] == "0.87"
    assert measured_value(tmp_path, "leak:layers.5.with_c|.0%")[0] == "87%"
    assert measured_value(tmp_path, "leak:edits")[0] == "12"
    assert measured_value(tmp_path, "leak:rows.1")[0] == "4"
    text, source = measured_value(tmp_path, "leak:edits")
    assert source.startswith("bench/results/leak.json: `python ") and str(tmp_path) not in source


@pytest.mark.parametrize("reference, message", [
    ("nothing:edits", "no file bench/results/nothing.json"),
    ("leak:layers.6.with_c", "has no '6' at 'layers.6.with_c' (there: ['5'])"),
    ("leak:layers.5", "is not a number or text"),
    ("leak:edits|.2q", "format '.2q' does not fit 12"),
    ("leak", "expected <name>:<dotted key>"),
])
def test_a_missing_file_key_or_a_bad_format_is_named(tmp_path, reference, message):
    write_measurement("leak", {"layers": {"5": {"with_c": 0.87}}, "edits": 12}, tmp_path)
    with pytest.raises(E2UError, match="measured") as error:
        measured_value(tmp_path, reference)
    assert message in str(error.value)


def test_a_bad_measurement_name_is_refused(tmp_path):
    with pytest.raises(E2UError, match="letters, digits"):
        write_measurement("../escape", {}, tmp_path)


def _build(tmp_path, text):
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "conf.py").write_text("extensions = ['e2u.book.measured_role']\n")
    (source / "index.rst").write_text(f"Leak\n====\n\nThe leakage is {text} of one edit.\n")
    with docutils_namespace():  # each build registers its nodes and roles afresh
        app = Sphinx(str(source), str(source), str(tmp_path / "html"), str(tmp_path / "doctrees"), "html",
                     warningiserror=True, status=None, warning=None, freshenv=True)
        app.build()
    return (tmp_path / "html" / "index.html").read_text()


def test_the_role_shows_the_value_with_its_source_and_a_missing_key_fails_the_build(tmp_path):
    write_measurement("leak", {"layers": {"5": {"with_c": 0.87312}}}, tmp_path / "src")
    page = _build(tmp_path, ":measured:`leak:layers.5.with_c|.2f`")
    assert '<abbr class="measured" title="bench/results/leak.json: `python' in page and ">0.87</abbr>" in page
    with pytest.raises(Exception, match="has no 'with_i'"):
        _build(tmp_path, ":measured:`leak:layers.5.with_i|.2f`")
