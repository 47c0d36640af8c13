"""The library's house: each package imports only from the rooms below it, and no two modules import each other.

Every module of `lib/e2u` is parsed (imports inside functions included); the order of the floors is written once,
here. A package may import its own modules; a module may import any floor below its own, never one above.
"""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "e2u"

# bottom to top: the ground floor's modules, then the subsystems in the order the study flows through them
FLOORS = ("e2u", "errors", "files", "hparams", "cache", "provenance",
          "model", "data", "training", "evaluation", "result", "editing", "unlearning", "recipes",
          "problem", "methods", "cell", "study", "book", "api", "cli", "__main__")


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package."""
    files = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = ["e2u", *path.relative_to(LIB).with_suffix("").parts]
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports anywhere in its code (top level or inside a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
                elif target in modules:
                    found.add(target)
    return found - {name}


def floor_of(name: str) -> int:
    parts = name.split(".")
    return FLOORS.index(parts[1] if len(parts) > 1 else parts[0])


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each an import circle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_lives_on_a_known_floor():
    unknown = [name for name in module_files() if (name.split(".") + [name])[1] not in FLOORS]
    assert not unknown, f"modules outside the floors {FLOORS}: {unknown}"


def test_no_package_imports_one_above_it():
    upward = sorted(f"{name} -> {other}" for name, others in import_graph().items() for other in others
                    if floor_of(other) > floor_of(name))
    assert not upward, "imports that run back up the house:\n" + "\n".join(upward)


def test_no_two_modules_import_each_other():
    assert not circles(import_graph()), circles(import_graph())


def test_the_checks_catch_a_circle_and_an_upward_import():
    graph = {"e2u.model.a": {"e2u.model.b"}, "e2u.model.b": {"e2u.model.a"}, "e2u.cell.c": set()}
    assert circles(graph) == [["e2u.model.a", "e2u.model.b"]]
    assert floor_of("e2u.cell.run") > floor_of("e2u.model.load") > floor_of("e2u.errors")


def test_the_ground_floor_is_small_and_no_file_is_long():
    top = [p.name for p in LIB.glob("*.py")]
    assert len(top) <= 12, top
    long = {str(p.relative_to(LIB)): n for p in LIB.rglob("*.py") if (n := len(p.read_text().splitlines())) > 320}
    assert not long, f"files over 320 lines: {long}"


ENTRY_POINT = "e2u.cli"  # imports each command's work when it runs, so that `e2u --help` answers at once


@pytest.mark.parametrize("name", sorted(module_files()))
def test_imports_sit_at_the_top_or_say_why(name):
    """A function-level import is allowed only for a heavy optional dependency, with a comment saying so (and in
    the command line's entry point, for the command's own work)."""
    path = module_files()[name]
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    top = {id(node) for node in tree.body}
    lazy = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top
            and not _inside_type_checking(tree, node) and not _guarded(tree, node)]
    unexplained = [lines[n.lineno - 1].strip() for n in lazy
                   if (_module(n).startswith("e2u") and name != ENTRY_POINT) or not _commented(lines, n.lineno - 1)]
    assert not unexplained, f"{path.relative_to(LIB)}: imports inside functions: {unexplained}"


def _module(node) -> str:
    return (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""


def _commented(lines: list[str], index: int) -> bool:
    """A comment on the import's line, or on the line above the run of imports it belongs to."""
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("from ", "import ")):
        index -= 1
    return lines[index - 1].strip().startswith("#")


def _inside_type_checking(tree, node) -> bool:
    return any(isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING" and node in ast.walk(n)
               for n in tree.body)


def _guarded(tree, node) -> bool:
    """Inside a `try` that handles ImportError: an optional dependency, its absence handled."""
    return any(isinstance(n, ast.Try) and any(node in ast.walk(b) for b in n.body)
               and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in n.handlers) for n in ast.walk(tree))


def test_the_tests_mirror_the_packages():
    tests = Path(__file__).resolve().parent
    packages = {p.name for p in LIB.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= packages, f"test folders without a package: {folders - packages}"
    assert packages <= folders, f"packages without a test folder: {packages - folders}"


def test_package_faces_import_nothing():
    """An `__init__.py` runs whenever one of its modules is imported: one that imported its modules back would
    close a circle that the module graph above does not show (e2u.data once re-exported its sources)."""
    faces = {name: imports for name, imports in import_graph().items() if module_files()[name].name == "__init__.py"}
    assert not {name: imports for name, imports in faces.items() if imports}, faces
