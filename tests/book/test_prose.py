"""The book's prose says what the study is, not how it came to be: no issue numbers, commit hashes or dates in a
chapter, a notebook template's text or the README, and no sentence of a chapter longer than a reader can parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from e2u.files import SOURCE_ROOT as ROOT

MAX_WORDS = 45  # the style asks for about 40 words at most; 45 leaves room for a long name or two

ISSUE = re.compile(r"\bissues?\s+#?\d+|(?<![\w&#])#\d+\b", re.IGNORECASE)  # "issue 34", "(#17)"; not "&#8212;"
DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b")  # 2026-12-03
# A commit hash: 7 to 40 hex digits with a letter and a digit among them, so that words ("defaced") and numbers
# ("1234567") are not taken for one. A notebook cell's id lives in its metadata, which is not read here.
HASH = re.compile(r"(?<![\w./-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])")


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "book" / "assignments").glob("*.md"))


def templates() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book" / "assignments").glob("*.ipynb"))


def markdown_of(path: Path) -> str:
    """A Markdown file's text, or a notebook's Markdown cells joined by blank lines."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def process_marks(text: str) -> list[str]:
    """Each issue number, commit hash or date in `text`, as written."""
    return [m.group(0) for pattern in (ISSUE, HASH, DATE) for m in pattern.finditer(text)]


def prose_units(markdown: str) -> list[str]:
    """The runs of prose in a chapter: paragraphs, and each list item on its own. Fenced code and directives
    (```...```), display math ($$...$$), tables, headings, HTML comments and MyST targets are left out."""
    units, current = [], []

    def close():
        if current:
            units.append(" ".join(current))
            current.clear()

    fence = None
    in_math = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            close()
            fence = stripped[:3]
            continue
        if in_math or stripped.startswith("$$"):
            close()
            single = stripped.startswith("$$") and stripped.endswith("$$") and len(stripped) > 2
            if not single:
                in_math = (not in_math) if stripped.startswith("$$") or stripped.endswith("$$") else in_math
            continue
        if not stripped or stripped.startswith(("|", "#", "<!--", "---")) or re.fullmatch(r"\(.+\)=", stripped):
            close()
            continue
        if re.match(r"([-*+]|\d+\.)\s", stripped):  # a list item starts a unit of its own
            close()
            stripped = re.sub(r"^([-*+]|\d+\.)\s+", "", stripped)
        current.append(stripped)
    close()
    return units


def words(sentence: str) -> int:
    """Words a reader reads: a code span, a role's text, a piece of inline math or a link counts as one."""
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " X ", sentence)  # {doc}`summary`, {measured}`a:b|.2f`
    text = re.sub(r"`[^`]*`", " X ", text)
    text = re.sub(r"\$[^$]+\$", " X ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return sum(1 for token in text.split() if re.search(r"[0-9A-Za-z]", token))


def sentences(unit: str) -> list[str]:
    """`unit` cut after '.', '?' or '!' (closing quotes and brackets included) where the next word starts with a
    capital letter, a quote, a bracket, emphasis, code or math; never inside a code span or inline math."""
    masked = re.sub(r"`[^`]*`|\$[^$]+\$", lambda m: m.group(0)[0] + "x" * (len(m.group(0)) - 2) + m.group(0)[-1], unit)
    cuts = [m.end() for m in re.finditer(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bal)(?<!\bvs)[.?!][\"')\]*]*\s+(?=[A-Z\"'(*`$])",
                                         masked)]
    bounds = [0, *cuts, len(unit)]
    return [unit[a:b].strip() for a, b in zip(bounds, bounds[1:]) if unit[a:b].strip()]


def long_sentences(markdown: str, limit: int = MAX_WORDS) -> list[tuple[int, str]]:
    return [(words(s), s) for unit in prose_units(markdown) for s in sentences(unit) if words(s) > limit]


# ---- the checker itself ----------------------------------------------------------------------------------------


def test_the_marks_are_found_and_cell_ids_and_words_are_not():
    text = "Fixed in issue 34 (#17) at 59a8da9 on 2026-12-03; see the effaced note, 1234567 rows, &#8212; and a cafe."
    assert process_marks(text) == ["issue 34", "#17", "59a8da9", "2026-12-03"]
    notebook = {"cells": [{"cell_type": "markdown", "id": "55ff2ed0", "source": ["# Cost\n", "Plain words."]},
                          {"cell_type": "code", "id": "a1b2c3d", "source": ["x = 'd5d7863'"]}]}
    assert "55ff2ed0" not in markdown_of_json(notebook) and process_marks(markdown_of_json(notebook)) == []


def markdown_of_json(notebook: dict) -> str:
    return "\n\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")


def test_a_long_sentence_is_found_and_lists_tables_code_and_math_are_not_sentences():
    long = " ".join(["word"] * 46) + "."
    assert [n for n, _ in long_sentences(long)] == [46]
    short_items = "\n".join(f"- item {i} has five words" for i in range(20))
    table = "| a | b |\n|---|---|\n" + "\n".join(f"| {' '.join(['w'] * 30)} | {' '.join(['w'] * 30)} |" for _ in range(3))
    code = "```python\n" + " ".join(["x"] * 100) + "\n```"
    math = "$$\n" + " ".join(["a +"] * 60) + "\n$$"
    spans = "One `" + " ".join(["c"] * 60) + "` span and $" + " + ".join(["m"] * 60) + "$ math."
    assert long_sentences("\n\n".join([short_items, table, code, math, spans])) == []
    two = " ".join(["word"] * 30) + ". Then " + " ".join(["word"] * 30) + ", e.g. this. Li et al. (2025) too."
    assert long_sentences(two) == []  # cut at the full stop
    assert sentences("Use one, e.g. This one. Li et al. (2025) agree.") == ["Use one, e.g. This one.",
                                                                           "Li et al. (2025) agree."]
    assert sentences("Run `make. Book` now. `e2u` runs it.") == ["Run `make. Book` now.", "`e2u` runs it."]


# ---- the book ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", chapters() + templates() + [ROOT / "README.md"], ids=lambda p: p.name)
def test_no_issue_number_commit_hash_or_date(path):
    found = process_marks(markdown_of(path))
    assert not found, f"{path.relative_to(ROOT)}: process history in the text: {found}"


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_no_sentence_longer_than_the_limit(path):
    found = long_sentences(markdown_of(path))
    assert not found, f"{path.relative_to(ROOT)}: sentences over {MAX_WORDS} words:\n" + "\n".join(
        f"  {n} words: {s[:160]}..." for n, s in found)
