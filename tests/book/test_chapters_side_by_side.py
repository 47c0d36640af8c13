"""`e2u book` executes its chapters side by side, in processes (papermill changes the working directory), each
kernel with its share of the cores; one chapter's error is raised after the others have ended."""

import os
import time
from pathlib import Path

import pytest

from e2u.book import build
from e2u.book.build import run_side_by_side


def _meet(mine: str, other: str) -> bool:
    """A chapter job that writes its file, then waits for the other's: it ends only if both run at once."""
    Path(mine).write_text(os.environ.get("OMP_NUM_THREADS", "unset"))
    deadline = time.monotonic() + 60
    while not Path(other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never appeared: the jobs ran one after the other")
        time.sleep(0.05)
    return True


def _fail(message: str) -> bool:
    raise ValueError(message)


def _working_directory(path: str) -> bool:
    Path(path).write_text(os.getcwd())
    return False  # as api_chapter does when its chapter is unchanged


def test_two_chapters_run_at_once_each_kernel_with_one_share_of_the_cores(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(build, "machine_cores", lambda: 2)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_side_by_side([("a", _meet, (a, b)), ("b", _meet, (b, a))], workers=2)
    assert Path(a).read_text() == "1" and Path(b).read_text() == "1"  # 2 cores, 2 at a time: one thread each
    out = capsys.readouterr().out
    assert "a notebook executed in" in out and "b notebook executed in" in out and "2 chapters in" in out


def test_a_users_thread_count_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_side_by_side([("a", _meet, (a, b)), ("b", _meet, (b, a))], workers=2)
    assert Path(a).read_text() == "3"


def test_a_failed_chapter_is_raised_after_the_others_ended(tmp_path, capsys):
    jobs = [("broken", _fail, ("no results for it",)), ("kept", _working_directory, (str(tmp_path / "cwd"),))]
    with pytest.raises(ValueError, match="no results for it"):
        run_side_by_side(jobs, workers=1)
    assert (tmp_path / "cwd").is_file()  # ran although the first job failed
    out = capsys.readouterr().out
    assert "broken notebook failed: no results for it" in out and "kept notebook unchanged, kept in" in out
