"""The README is the project's front door: short, opening with the two commands that set everything up (the ones
CI runs), and every file, link, make target, `e2u` command and API function it names is one that exists."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from e2u.files import SOURCE_ROOT as ROOT

README = ROOT / "README.md"
MAX_WORDS = 1200
PICTURE_BYTES = 300_000


def text() -> str:
    return README.read_text(encoding="utf-8")


def code(markdown: str) -> list[str]:
    """The README's code: fenced blocks and inline spans, where commands and paths are written."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", markdown, flags=re.S | re.M)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", markdown, flags=re.S | re.M)
    return blocks + [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]


def links(markdown: str) -> list[str]:
    """Every link and image target of the Markdown, outside code."""
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", markdown, flags=re.S | re.M)
    prose = re.sub(r"`[^`]*`", "", prose)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose)


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")


def test_the_readme_is_short():
    words = len(text().split())
    assert words <= MAX_WORDS, f"README.md has {words} words: at most {MAX_WORDS} (the measurements go to CHANGELOG.md)"


def test_the_readme_opens_with_the_two_setup_commands_that_ci_runs():
    lines = text().splitlines()
    assert lines[0] == "```bash", "README.md must open with a bash block"
    commands = [line.split("#")[0].strip() for line in lines[1:3]]
    assert commands == ["make book", "make test"], lines[:4]
    assert lines[3] == "```"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci, ".ci/run no longer runs the README's test command"


def test_every_relative_link_points_to_a_file_that_exists():
    targets = [t for t in links(text()) if relative(t)]
    assert targets, "the README links no file of the repository"
    missing = [t for t in targets if not (README.parent / t.split("#")[0]).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_the_picture_is_a_small_png():
    pictures = [t for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text()) if relative(t)]
    for picture in pictures:
        data = (README.parent / picture).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{picture} is not a PNG"
        assert len(data) < PICTURE_BYTES, f"{picture} is {len(data)} bytes: under {PICTURE_BYTES}, please"


def test_every_path_the_readme_names_in_code_exists():
    path = re.compile(r"^(?:\.?[\w-]+/)+[\w.-]+\.(?:py|sh|yaml|yml|ipynb|md|cff|txt|toml)$")
    named = {word for span in code(text()) for word in span.split() if path.match(word)}
    assert named, "no path found: has the README's form changed?"
    missing = sorted(p for p in named if not (ROOT / p).exists() and "mine" not in p)
    assert not missing, f"README.md names files that do not exist: {missing}"


def test_every_make_target_the_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = {m for span in code(text()) for m in re.findall(r"\bmake ([a-z][\w-]*)", span)}
    assert {"book", "test"} <= targets
    missing = sorted(t for t in targets if not re.search(rf"^{re.escape(t)}:", makefile, re.M))
    assert not missing, f"README.md names make targets the Makefile lacks: {missing}"


def _help(args: list[str]) -> str:
    from e2u.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main([*args, "--help"])
    assert exit.value.code == 0, f"e2u {' '.join(args)} --help failed"
    return out.getvalue()


def test_every_e2u_command_and_option_the_readme_names_exists():
    used = []
    for span in code(text()):
        for line in span.splitlines():
            for match in re.finditer(r"\be2u ((?:study )?[a-z]+)([^#|;&]*)", line):
                used.append((match.group(1).split(), re.findall(r"(?<!\S)(--[a-z][\w-]*)", match.group(2))))
    assert {" ".join(c) for c, _ in used} >= {"rerun", "eval", "export", "study plan", "study run"}, used
    for command, options in used:
        shown = _help(command)
        for option in options:
            assert option in shown, f"README.md gives `e2u {' '.join(command)}` an option it lacks: {option}"


def test_every_api_function_the_readme_names_exists():
    import e2u.api

    named = {m for span in code(text()) for m in re.findall(r"\be2u\.api\.(\w+)", span)}
    assert named, "the README names no API function"
    missing = sorted(n for n in named if not callable(getattr(e2u.api, n, None)))
    assert not missing, f"README.md names e2u.api functions that do not exist: {missing}"


def test_the_readme_holds_no_issue_numbers_commit_hashes_or_dates():
    body = text()
    assert not re.search(r"\bissues? #?\d+", body, re.I), "issue numbers belong in CHANGELOG.md"
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", body), "dates belong in CHANGELOG.md"
    hashes = [h for h in re.findall(r"\b[0-9a-f]{7,40}\b", body) if re.search(r"[a-f]", h) and re.search(r"\d", h)]
    assert not hashes, f"commit hashes belong in CHANGELOG.md: {hashes}"
