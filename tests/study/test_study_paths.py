"""Every path a study writes is its own, and paths in a study file mean the same from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from e2u.book.build import SITE_STUDY_FILE, clear_another_studys_site, stale_outputs, study_toc
from e2u.files import SOURCE_ROOT as ROOT
from e2u.study.grid import load_study, notebook_path, result_path


def _study(tmp_path: Path, name: str, data: dict | None = None) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "setting": "pretrained", "data": data or {"source": "mini"},
                                    "methods": ["rome"]}))
    return path


def test_two_studies_with_the_same_cells_write_different_chapters_and_results(tmp_path):
    a, b = load_study(_study(tmp_path, "a")), load_study(_study(tmp_path, "b"))
    assert a.cells[0].cell_id == b.cells[0].cell_id and a.cells[0].setting == b.cells[0].setting
    book, results = tmp_path / "book", tmp_path / "results"
    assert notebook_path(book, a, a.cells[0]) != notebook_path(book, b, b.cells[0])
    assert notebook_path(book, a, a.cells[0]) == book / "runs" / "a" / "pretrained" / "rome-seed0.ipynb"
    assert result_path(results, a, a.cells[0]) != result_path(results, b, b.cells[0])
    # study b's chapter is not a's stale output, nor the other way round
    for study, other in ((a, b), (b, a)):
        chapter = notebook_path(book, other, other.cells[0])
        chapter.parent.mkdir(parents=True, exist_ok=True)
        chapter.write_text("{}")
    assert stale_outputs(a, results, book) == [] and stale_outputs(b, results, book) == []


def test_the_book_of_one_study_lists_only_its_own_chapters(tmp_path):
    toc = yaml.safe_load(study_toc(ROOT, tmp_path / "book", "small").read_text())
    globs = [s["glob"] for c in toc["chapters"] for s in c.get("sections", []) if "glob" in s]
    assert globs == ["book/results/*", "book/runs/small/*/*"]  # the setting chapters are the study's own (e2u book)
    site = tmp_path / "_build" / "html"
    site.mkdir(parents=True)
    (site / SITE_STUDY_FILE).write_text("default")
    (site / "old-page.html").write_text("a chapter of the default study")
    clear_another_studys_site(site, "default")
    assert (site / "old-page.html").exists()  # the same study: an incremental build keeps it
    clear_another_studys_site(site, "small")
    assert not (tmp_path / "_build").exists()  # another study's site never shows beside this one's


def test_a_relative_data_path_means_the_same_file_from_any_working_directory(tmp_path, monkeypatch):
    (tmp_path / "studies" / "data").mkdir(parents=True)
    study_file = _study(tmp_path / "studies", "rel", {"source": "jsonl", "path": "data"})
    expected = str((tmp_path / "studies" / "data").resolve())
    for cwd in (tmp_path, tmp_path / "studies", Path("/")):
        monkeypatch.chdir(cwd)
        assert load_study(os.path.relpath(study_file, cwd) if cwd != Path("/") else study_file).cells[0].data_path == expected
