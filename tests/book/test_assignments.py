"""Each assignment's check cell fails on the starter code and on the common wrong answers, and passes on the
instructor's solution; the check runs the student's function (in ROME's edit too), writes nothing outside a
temporary folder; the notebooks say their objectives, time and written questions, and hold no solution."""

from __future__ import annotations

import importlib.util
import inspect
import re

import nbformat
import pytest
import torch
import torch.nn.functional as F

from e2u.book import assignments
from e2u.editing import rome
from e2u.files import SOURCE_ROOT as ROOT

ASSIGNMENTS = {"rank_one_update": ["rank_one_update"], "npo_loss": ["npo_forget_term"],
               "refusal_target": ["rouge1_recall", "refusal_for"]}


def solutions():
    spec = importlib.util.spec_from_file_location("solutions", ROOT / "instructor" / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(name: str):
    return nbformat.read(ROOT / "book" / "assignments" / f"{name}.ipynb", as_version=4)


def checks_of(name: str, functions: dict | None = None) -> list:
    """Run the notebook's code cells in order, as a kernel would, with the starter functions, or `functions` in
    their place; return the check cell's verdicts."""
    code = [c.source for c in notebook(name).cells if c.cell_type == "code"]
    namespace: dict = {}
    exec(code[0], namespace)  # the starter cell
    namespace.update(functions or {})
    for source in code[1:]:
        exec(source, namespace)
    return namespace.get("checks") or [namespace["check"]]


def solved(name: str, **replaced) -> dict:
    return {**{f: getattr(solutions(), f) for f in ASSIGNMENTS[name]}, **replaced}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_check_fails_on_the_starter_code_with_a_hint(name):
    verdicts = checks_of(name)
    assert not all(c.passed for c in verdicts) and all(str(c).startswith(("PASS", "FAIL")) for c in verdicts)
    assert any(not c.passed and len(c.message) > 20 for c in verdicts)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_the_check_passes_on_the_solution(name):
    verdicts = checks_of(name, solved(name))
    assert all(c.passed for c in verdicts), [str(c) for c in verdicts]


def _with_u(k_star, k, v_star, v, inverse_moment, u):
    return torch.outer(v_star - v, u) / (u @ k)


# Wrong answers students write, each with a word of the hint it must get.
WRONG = {
    "rank_one_update": {
        "ignores C": (lambda ks, k, vs, v, c: _with_u(ks, k, vs, v, c, ks), "leaves alone"),
        "C^-1 k in place of C^-1 k*": (lambda ks, k, vs, v, c: _with_u(ks, k, vs, v, c, c @ k if c is not None else k),
                                        "leaves alone"),
        "divides by u . k*": (lambda ks, k, vs, v, c: torch.outer(vs - v, c @ ks if c is not None else ks)
                              / ((c @ ks if c is not None else ks) @ ks), "is not v*"),
        "transposed": (lambda *args: solutions().rank_one_update(*args).T, "shape"),
        "half the update": (lambda *args: solutions().rank_one_update(*args) / 2, "is not v*"),
    },
    "npo_loss": {
        "gradient ascent's loss with its sign flipped": (lambda gain, beta: gain.mean(), "learned them"),
        "NPO with the gain's sign flipped": (lambda gain, beta: -(2 / beta) * F.logsigmoid(-beta * gain).mean(),
                                             "learned them"),
        "NPO with the loss's sign flipped": (lambda gain, beta: (2 / beta) * F.logsigmoid(beta * gain).mean(),
                                             "learned them"),
        "gradient ascent": (lambda gain, beta: -gain.mean(), "(2 / beta) log 2"),
        "a sum, not a mean": (lambda gain, beta: -(2 / beta) * F.logsigmoid(beta * gain).sum(), "(2 / beta) log 2"),
        "detached": (lambda gain, beta: -(2 / beta) * F.logsigmoid(beta * gain.detach()).mean(), "no gradient"),
    },
    "refusal_target": {
        "one refusal for every question": (lambda q: "I don't know.", "does not say what"),
        "the study's fixed template": (lambda q: "I'm sorry, but I don't have any information about that.",
                                       "does not say what"),
        "a refusal that leaks": (lambda q: f"I'm not sure about {q} Perhaps Paris, or Jane Austen.", "leaks"),
        "no refusal": (lambda q: f"You asked: {q}", "refusal"),
        "too long": (lambda q: f"I'm not sure about {q} " + "really " * 40, "under 40"),
    },
}


@pytest.mark.parametrize("name,wrong", [(n, w) for n, answers in WRONG.items() for w in answers])
def test_the_check_fails_on_a_wrong_answer(name, wrong):
    function, hint = WRONG[name][wrong]
    verdicts = checks_of(name, solved(name, **{ASSIGNMENTS[name][-1]: function}))
    assert not verdicts[-1].passed and hint in verdicts[-1].message, str(verdicts[-1])
    assert all(c.passed for c in verdicts[:-1])  # the other check of the notebook, solved, still passes


def test_the_npo_starter_is_gradient_ascent_and_minimising_it_raises_the_forget_loss():
    namespace: dict = {}
    exec(next(c.source for c in notebook("npo_loss").cells if c.cell_type == "code"), namespace)
    gain = torch.tensor([1.0, -2.0, 4.0])
    assert namespace["npo_forget_term"](gain, 0.1).item() == pytest.approx(-1.0)
    before, after = assignments.tiny_unlearning(namespace["npo_forget_term"])
    assert after > before + 1
    flipped_before, flipped_after = assignments.tiny_unlearning(lambda g, beta: g.mean())
    assert flipped_after < flipped_before - 1  # the old starter's loss: the model learns the forget answers


def test_the_rank_one_check_runs_the_students_function_in_romes_edit():
    calls = []

    def student(k_star, k, v_star, v, inverse_moment):
        calls.append(k.numel())
        return solutions().rank_one_update(k_star, k, v_star, v, inverse_moment)

    library = rome.rank_one_update
    check = assignments.check_rank_one_update(student)
    assert check.passed, str(check)
    assert len(calls) == 6 and calls[-1] == 64  # five random problems, then the tiny model's MLP keys (64)
    assert rome.rank_one_update is library  # the library's function is back in place after the edit


def test_the_rank_one_check_fails_when_the_edit_does_not_get_the_students_update():
    """A function right on the small random problems but not in the edit (keys of 64) fails: the check
    measures the edit it ran with the student's function, not the library's ROME."""
    def student(k_star, k, v_star, v, inverse_moment):
        delta = solutions().rank_one_update(k_star, k, v_star, v, inverse_moment)
        return delta if k.numel() < 64 else torch.zeros_like(delta)

    check = assignments.check_rank_one_update(student)
    assert not check.passed and "away from v*" in check.message, str(check)
    measured = assignments.tiny_rome_edit(solutions().rank_one_update)
    assert measured["calls"] == 1 and measured["weight_moved_by_yours"] and measured["miss"] < 1e-3
    assert measured["after"] > 0.5 > measured["before"]


def test_the_checks_write_nothing_outside_a_temporary_folder(tmp_path, monkeypatch):
    home = tmp_path / "e2u_home"
    monkeypatch.setenv("E2U_HOME", str(home))
    watched = [ROOT / "results", ROOT / "book", ROOT / "instructor"]
    before = {p: p.stat().st_mtime_ns for folder in watched if folder.exists() for p in folder.rglob("*")}
    for name in ASSIGNMENTS:
        checks_of(name, solved(name))
    after = {p: p.stat().st_mtime_ns for folder in watched if folder.exists() for p in folder.rglob("*")}
    assert after == before
    assert not home.exists() or not any(home.iterdir())


def test_every_notebook_says_its_objectives_time_and_two_written_questions():
    for name in ASSIGNMENTS:
        cells = [c.source for c in notebook(name).cells if c.cell_type == "markdown"]
        assert "**Objectives.**" in cells[0] and re.search(r"\*\*Time\.\*\* About (an hour|\d+ minutes)", cells[0])
        questions = next(c for c in cells if c.startswith("## Written questions"))
        assert re.findall(r"^(\d)\. ", questions, flags=re.MULTILINE) == ["1", "2"], name
        assert not any(c.outputs for c in notebook(name).cells if c.cell_type == "code")  # the book shows them unrun


def test_no_student_notebook_holds_a_line_of_a_solution():
    lines = set()
    for name, functions in ASSIGNMENTS.items():
        for function in functions:
            body = inspect.getsource(getattr(solutions(), function)).split('"""')[-1]
            lines |= {line.strip() for line in body.splitlines() if len(line.strip()) > 12}
    assert len(lines) >= 8
    for name in ASSIGNMENTS:
        text = "\n".join(c.source for c in notebook(name).cells)
        assert not [line for line in lines if line in text], name


def test_the_index_says_how_to_open_them_with_the_make_target_that_installs_it():
    index = (ROOT / "book" / "assignments" / "index.md").read_text()
    assert "make assignments" in index and ".venv/bin/jupyter lab book/assignments" in index
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nassignments: $(STAMP)\n")[1].split("\n\n")[0]
    assert "install" in recipe and "jupyterlab" in recipe and "jupyter lab book/assignments" in recipe
    # the book's own install leaves it out: the lock and pyproject.toml's dependencies do not name it
    assert "jupyterlab" not in (ROOT / "requirements-lock.txt").read_text().lower()
    assert "jupyterlab" not in (ROOT / "pyproject.toml").read_text().lower()
