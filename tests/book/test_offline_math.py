"""The book's equations need no network: a small book built with the project's own `_config.yml` (a Markdown chapter
with `$...$` and `$$...$$`, a notebook with LaTeX in a Markdown cell, a page without math) loads MathJax from a file
of its own site, and no page names a script, stylesheet or MathJax/KaTeX of another host."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from e2u.files import SOURCE_ROOT as ROOT

pytestmark = pytest.mark.site

# The equations of the fixture, as the reader should see them typeset (the browser test counts them).
MARKDOWN = r"""# Equations

The key $k_* = \frac{1}{N}\sum_j k(x_j + p)$ and MEMIT's update:

$$\Delta W = R\,K^\top \left(\lambda C + K K^\top\right)^{-1}$$
"""
NOTEBOOK = r"""# A notebook

The loss $\mathcal{L} = -\log p(y \mid x)$ vanishes where

$$\frac{\partial \mathcal{L}}{\partial W} = 0$$
"""
EQUATIONS = {"equations.html": 2, "notebook.html": 2, "plain.html": 0}
REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?((?:https?:)?//[^"'\s>]+)""",
                    re.IGNORECASE)
MATH_CDN = re.compile(r"https?://[^\s\"']*(?:mathjax|katex|jsdelivr|cdnjs|unpkg)", re.IGNORECASE)


def build_math_book(tmp_path: Path) -> Path:
    """A three-page Jupyter Book under `tmp_path` built with the repository's `_config.yml`, `_static` and `_extra`;
    returns its site (`_build/html`)."""
    root = tmp_path / "mathbook"
    root.mkdir()
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", root / "book" / "references.bib")  # _config.yml's bibtex_bibfiles
    shutil.copytree(ROOT / "_static", root / "_static")
    shutil.copytree(ROOT / "_extra", root / "_extra")
    (root / "_toc.yml").write_text("format: jb-book\nroot: equations\nchapters:\n- file: notebook\n- file: plain\n")
    (root / "equations.md").write_text(MARKDOWN)
    (root / "plain.md").write_text("# No equations\n\nProse alone.\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(NOTEBOOK)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "notebook.ipynb")
    jb = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--warningiserror",
                           "--keep-going"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "_build" / "html"


@pytest.fixture(scope="module")
def math_site(tmp_path_factory):
    return build_math_book(tmp_path_factory.mktemp("offline_math"))


def test_pages_with_equations_load_mathjax_from_a_file_of_the_site(math_site):
    for page, equations in EQUATIONS.items():
        html = (math_site / page).read_text()
        scripts = re.findall(r'<script[^>]*\bsrc="([^"]*mathjax[^"]*)"', html, re.IGNORECASE)
        if not equations:
            assert not scripts, f"{page} has no equation but loads {scripts}"
            continue
        assert html.count('class="math') == equations, page
        assert scripts, f"{page} has equations and no MathJax script"
        for src in scripts:
            assert "://" not in src and not src.startswith("//"), f"{page} loads MathJax from {src}"
            assert (math_site / src.split("?")[0]).is_file(), f"{page} loads {src}, which the site lacks"
            assert src.startswith("_static/"), src


def test_no_page_names_a_script_stylesheet_or_math_library_of_another_host(math_site):
    for path in math_site.rglob("*.html"):
        html = path.read_text()
        remote = REMOTE.findall(html) + MATH_CDN.findall(html)
        assert not remote, f"{path.relative_to(math_site)} names another host: {remote}"
    fonts = list((math_site / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert fonts, "MathJax's fonts are not in the site (CHTML output would ask for them)"


def test_the_site_that_redistributes_mathjax_carries_its_licence(math_site):
    """MathJax is Apache 2.0, which asks a redistributor to pass the licence on; sphinx-mathjax-offline's wheel
    copies MathJax's files without it, so the book's _static/mathjax/LICENSE goes beside them."""
    licence = math_site / "_static" / "mathjax" / "LICENSE"
    assert licence.is_file() and "Apache License" in licence.read_text() and "Version 2.0" in licence.read_text()
