"""Which library code a result depends on: the one definition every cache key uses.

A result depends on the modules its computation imports, followed through `e2u`'s own imports
(top-level and inside functions), never through the book's presentation modules. A cell depends on
`cell/run.py`'s closure with the method registry's other methods left out, plus its own method's
closure and the per-family YAML defaults; the unedited model's evaluation depends on
`evaluation/evaluate.py`'s closure. So editing one method's file reruns only that method's cells (and those
of methods that import it, as AlphaEdit imports MEMIT), and editing a table reruns none.
"""

from __future__ import annotations

import ast
from pathlib import Path

from e2u.files import sha256_of_file, sha256_of_json

PACKAGE = Path(__file__).resolve().parent
PRESENTATION = frozenset({"cli.py", "book/report.py", "study/stages.py", "study/prepare.py"})
CELL = PACKAGE / "cell" / "run.py"  # what every cell runs
EVALUATION = PACKAGE / "evaluation" / "evaluate.py"  # what every evaluation of a model runs


def _module_file(dotted: str) -> Path | None:
    """The file of an `e2u...` module name, or None outside the package."""
    parts = dotted.split(".")
    if parts[0] != "e2u":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    """The package files `path` imports, at any depth of its code."""
    package = "e2u." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        found |= {f for f in map(_module_file, names) if f is not None}
    return found


def closure(entries: set[Path], leave_out: frozenset[Path] = frozenset()) -> set[Path]:
    """`entries` and every package file they import, transitively, not entering `leave_out`."""
    seen, todo = set(), [p.resolve() for p in entries]
    while todo:
        path = todo.pop()
        if path in seen or path in leave_out or path.relative_to(PACKAGE).as_posix() in PRESENTATION:
            continue
        seen.add(path)
        todo += [p.resolve() for p in _imports(path)]
    return seen


def cell_code_files(method_file: Path, other_method_files: frozenset[Path]) -> list[Path]:
    """The files a cell of the method defined in `method_file` depends on (`methods.method_code_files`)."""
    files = closure({CELL}, leave_out=other_method_files) | closure({method_file})
    return sorted(files | set((PACKAGE / "hparams").glob("*.yaml")) | set((PACKAGE / "data").glob("*.jsonl")))


def evaluation_code_files() -> list[Path]:
    """The files the evaluation of a model depends on."""
    return sorted(closure({EVALUATION}))


def code_digest(files: list[Path]) -> str:
    return sha256_of_json({str(p.relative_to(PACKAGE)): sha256_of_file(p) for p in files})[:16]
