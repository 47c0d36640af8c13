"""The book end to end on a tiny study: its results, `e2u book` (summary notebook + jupyter-book build) in a
temporary book project, and the pages that come out: titles written by the notebooks, numbers from the results."""

import html
import json
import re
import shutil

import pytest
import yaml
from test_study_end_to_end import write_tiny_study

from e2u.book.build import study_toc
from e2u.cli import main
from e2u.files import SOURCE_ROOT as ROOT
from e2u.study.grid import load_study
from e2u.study.runner import run_study


def build_tiny_book(tmp_path, api: bool = False):
    """The tiny study run and its book built in a copy of the book project under `tmp_path` (the repository's
    book/ and _build/ stay untouched), with the Python API chapter (minutes on the embedded model) when `api`;
    returns (study, results folder, site root)."""
    study_file = write_tiny_study(tmp_path)
    study = load_study(study_file)
    site = tmp_path / "site"
    (site / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, site / name)
    shutil.copytree(ROOT / "_static", site / "_static")
    shutil.copytree(ROOT / "_extra", site / "_extra")
    for page in [*(ROOT / "book").glob("*.md"), ROOT / "book" / "references.bib"]:  # chapters, their references
        shutil.copy(page, site / "book" / page.name)
    shutil.copytree(ROOT / "book" / "assignments", site / "book" / "assignments")
    (site / "lib").symlink_to(ROOT / "lib")  # the methods chapter shows the library's code (literalinclude)
    (site / "bench").symlink_to(ROOT / "bench")  # and quotes the benchmarks' numbers (bench/results, `measured`)
    results = tmp_path / "results"
    outcomes = run_study(study, results, site / "book")
    assert [o.status for o in outcomes] == ["ran", "ran"], [o.error for o in outcomes]
    assert main(["book", str(study_file), "--results", str(results), "--book", str(site / "book"),
                 "--root", str(site)] + ([] if api else ["--no-api-chapter"])) == 0
    return study, results, site


@pytest.mark.slow
@pytest.mark.site
def test_book_builds_the_summary_and_chapters_from_the_result_files(tmp_path):
    before = _repository_outputs()
    study, results, site = build_tiny_book(tmp_path, api=True)

    pages = site / "_build" / "html" / "book"
    summary = (pages / "summary.html").read_text()
    for cell in study.cells:
        result = json.loads((results / "tiny" / cell.setting / f"{cell.cell_id}.json").read_text())
        # the summary's table: the method's row, its combined score (one seed: the value alone), a link to its page
        combined = result["aggregates"]["after"]["combined_score"]["value"]
        row = re.search(rf"<tr[^>]*>\s*<td[^>]*><p>{re.escape(result['method_title'])}</p></td>.*?</tr>", summary, re.S)
        assert row and f"{combined:.3f}" in row.group(0), f"no summary row for {result['method_title']}"
        link = rf'href="runs/tiny/{cell.setting}/{cell.cell_id}\.html">(<span[^>]*>)?{cell.seed}<'
        assert re.search(link, row.group(0)), f"the summary's row does not link to {cell.cell_id}"
        # The chapter's title is the cell's own, glued by the notebook: the page title and its TOC entry.
        chapter = (pages / "runs" / "tiny" / cell.setting / f"{cell.cell_id}.html").read_text()
        assert f"<title>{html.escape(cell.title)} &#8212;" in chapter
        entry = rf'href="runs/tiny/{cell.setting}/{cell.cell_id}\.html">(<span[^>]*>)?{re.escape(html.escape(cell.title))}<'
        assert re.search(entry, summary), f"no TOC entry titled {cell.title!r}"
    assert "ROME" in summary and "GA" in summary
    # one results chapter per setting, linked from the summary, with the setting's tables
    for setting in {c.setting for c in study.cells}:
        page = (pages / "results" / f"{setting}.html").read_text()
        assert f"<title>Results: {setting} &#8212;" in page and f'href="results/{setting}.html"' in summary
        assert "The paper’s metrics" in page or "The paper's metrics" in page
        # the heading names the model, the questions per seed and the seeds, read from the result files
        assert re.search(r"Model model \(a local model\), data <code[^>]*><span[^>]*>jsonl</span></code>: \d+ forget "
                         r"and \d+ neighbour questions per seed; seed 0; 2 cells\.", page), "no heading sentence"
        assert "1 − Rouge1(forget) + Rouge1(neighbour)" in page and "\\text{" not in page
        assert all(c.cell_id in page for c in study.cells if c.setting == setting)
    editors = (pages / "editors.html").read_text()  # a benchmark's number, read from its file
    leakage = json.loads((ROOT / "bench" / "results" / "rome_leakage.json").read_text())["values"]
    assert f'>{leakage["layers"]["5"]["with_c"]:.2f}</abbr>' in editors
    claims = (pages / "claims.html").read_text()
    # the tiny study has ROME and GA alone: claim 2 (editors against the paper's baselines) is measured, the
    # other three, which name WISE, AlphaEdit or merged queries, are not
    assert "The paper’s claims" in claims or "The paper's claims" in claims
    assert claims.count("Verdict: <strong>not measured</strong>") == 3
    assert re.search(r"Editing gives human-aligned refusals\.</strong>[^<]*Verdict: <strong>(holds|holds partly|"
                     r"inconclusive|does not hold)</strong>", claims)
    cost = (pages / "cost.html").read_text()
    assert "What it cost" in cost and "No GPU run has been made" in cost
    api = (pages / "api.html").read_text()  # the Python API chapter, executed by `e2u book` on the embedded model
    assert "The Python API" in api and "largest |difference|" in api and "rome.change.safetensors" in api
    assert _repository_outputs() == before, "e2u book --root wrote into the repository's own book"


def _repository_outputs() -> dict:
    paths = [ROOT / "book" / "summary.ipynb", ROOT / "_build" / "html" / "index.html"]
    return {p: p.stat().st_mtime_ns for p in paths if p.exists()}


def test_book_refuses_a_root_without_a_toc_or_chapters_outside_it(tmp_path, capsys):
    study_file = tmp_path / "s.yaml"
    study_file.write_text("name: s\nmethods: [rome]\n")
    (tmp_path / "results" / "s").mkdir(parents=True)
    common = ["book", str(study_file), "--results", str(tmp_path / "results")]
    assert main(common + ["--root", str(tmp_path / "site"), "--book", str(tmp_path / "site" / "book")]) == 2
    assert "has no _config.yml" in capsys.readouterr().err
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / "site").mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / "site" / name)
    assert main(common + ["--root", str(tmp_path / "site"), "--book", str(tmp_path / "elsewhere")]) == 2
    assert "reads the chapters" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


def test_a_book_built_without_the_api_chapter_leaves_it_out_of_its_table_of_contents(tmp_path):
    toc = yaml.safe_load(study_toc(ROOT, tmp_path, "tiny").read_text())
    assert "book/api" not in [entry.get("file") for entry in toc["chapters"]]
    (tmp_path / "api.ipynb").write_text("{}")
    toc = yaml.safe_load(study_toc(ROOT, tmp_path, "tiny").read_text())
    assert "book/api" in [entry.get("file") for entry in toc["chapters"]]
