"""A study killed with SIGKILL at random moments and started again: no finished cell runs twice, no
partial file is trusted, and no temporary file of a killed run is left at the end."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study_end_to_end import write_tiny_study

from e2u.study.grid import cell_key, is_done, load_study, notebook_path, result_path
from e2u.study.run_lock import leftover_temporaries


def _finished(study, results: Path, book: Path) -> dict:
    """cell id -> sha256 of its result file, for every cell whose result and notebook are complete."""
    done = {}
    for cell in study.cells:
        result, notebook = result_path(results, study, cell), notebook_path(book, study, cell)
        if is_done(result, notebook, cell_key(cell)):
            done[cell.cell_id] = hashlib.sha256(result.read_bytes()).hexdigest()
    return done


def _start(study_file: Path, results: Path, book: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "e2u.cli", "study", "run", str(study_file), "--results", str(results),
               "--book", str(book), "--workers", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_study_killed_at_random_moments_resumes_without_redoing_finished_cells(tmp_path):
    study_file = write_tiny_study(tmp_path)
    study_file.write_text(study_file.read_text().replace("methods:", "seeds: [0, 1]\nmethods:"))
    study = load_study(study_file)
    results, book = tmp_path / "results", tmp_path / "book"
    rng = random.Random(14)
    seen: dict[str, str] = {}
    for kill in range(3):
        run = _start(study_file, results, book)
        time.sleep(rng.uniform(4, 25))
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        time.sleep(2)  # a kernel whose worker died notices within a second and exits
        now = _finished(study, results, book)
        assert {c: h for c, h in now.items() if c in seen} == seen, f"kill {kill}: a finished cell was run again"
        seen.update(now)
        for path in results.rglob("*.json"):
            if not path.name.startswith("."):
                json.loads(path.read_text())  # no visible file is half-written
    run = _start(study_file, results, book)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out
    final = _finished(study, results, book)
    assert len(final) == len(study.cells) == 4, out
    assert {c: final[c] for c in seen} == seen, "a cell finished before a kill was run again"
    for cell_id in seen:
        assert f"cached  {cell_id}" in out
    assert leftover_temporaries(book, results / study.name) == []
