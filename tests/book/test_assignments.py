"""Each assignment's check cell fails on the starter code and passes on the instructor's solution."""

from __future__ import annotations

import importlib.util

import nbformat
import pytest

from e2u.files import SOURCE_ROOT as ROOT

ASSIGNMENTS = {"rank_one_update": ["rank_one_update"], "npo_loss": ["npo_forget_term"],
               "refusal_target": ["rouge1_recall", "refusal_for"]}


def solutions():
    spec = importlib.util.spec_from_file_location("solutions", ROOT / "instructor" / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_of(name: str, solved: bool) -> list:
    """Run the notebook's code cells in order, as a kernel would, with the starter functions (or the solutions
    in their place); return the check cell's verdicts."""
    notebook = nbformat.read(ROOT / "book" / "assignments" / f"{name}.ipynb", as_version=4)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    namespace: dict = {}
    exec(code[0], namespace)  # the starter cell
    if solved:
        for function in ASSIGNMENTS[name]:
            namespace[function] = getattr(solutions(), function)
    for source in code[1:]:
        exec(source, namespace)
    return namespace.get("checks") or [namespace["check"]]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_check_fails_on_the_starter_code_with_a_hint(name, capsys):
    verdicts = checks_of(name, solved=False)
    assert not all(c.passed for c in verdicts) and all(str(c).startswith(("PASS", "FAIL")) for c in verdicts)
    assert any(not c.passed and len(c.message) > 20 for c in verdicts)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_check_passes_on_the_solution(name, capsys):
    verdicts = checks_of(name, solved=True)
    assert all(c.passed for c in verdicts), [str(c) for c in verdicts]


def test_no_student_notebook_holds_a_solution():
    for name, functions in ASSIGNMENTS.items():
        text = (ROOT / "book" / "assignments" / f"{name}.ipynb").read_text()
        assert "torch.outer(v_star - v" not in text and "logsigmoid(beta * gain)" not in text, name
