"""One run of a study at a time, and the temporary files of killed runs cleaned up.

A running study holds an exclusive lock (`flock`) on `<book>/runs/.e2u-run.lock`. The lock dies
with its process, SIGKILL included, so a later run that takes it knows that no run owns the hidden
temporary files (`.<name>.<random>.ipynb` / `.json`) left under `<book>/runs/` and
`<results>/<study>/`: they are half-written outputs of a killed run, and are removed.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from e2u.errors import E2UError


def leftover_temporaries(book_dir: Path, results_dir: Path) -> list[Path]:
    """Hidden files that `files.atomic_path` creates beside a notebook or a result file."""
    found = []
    for directory, suffix in ((book_dir / "runs", ".ipynb"), (results_dir, ".json")):
        if directory.is_dir():
            found += [p for p in directory.rglob(f".*{suffix}") if p.is_file() and p.name.count(".") >= 3]
    return sorted(found)


@contextmanager
def study_run_lock(book_dir: Path, results_dir: Path) -> Iterator[list[Path]]:
    """Hold the run lock; yields the leftover temporaries it removed."""
    lock_path = Path(book_dir) / "runs" / ".e2u-run.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise E2UError(f"another `e2u study run` writes to {book_dir} ({owner} holds {lock_path}); "
                           "wait for it or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        removed = leftover_temporaries(Path(book_dir), Path(results_dir))
        for path in removed:
            path.unlink(missing_ok=True)
        yield removed
    finally:
        handle.close()  # releases the lock
