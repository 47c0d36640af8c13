"""The site check's layout rule on tiny pages in a real browser: a wide table or figure that runs off a phone's
screen or is cut by its container fails; the same page with the book's own stylesheet (`_static/e2u.css`) passes.
Skipped, saying why, where Chromium is absent."""

from __future__ import annotations

import shutil

import pytest

from e2u.book import site_check
from e2u.files import SOURCE_ROOT as ROOT

pytestmark = [pytest.mark.site,
              pytest.mark.skipif(bool(site_check.browser_missing()), reason=site_check.browser_missing() or "-")]

TABLE = "<table><tr>" + "".join(f"<td>column{i:02d}_with_a_long_name</td>" for i in range(30)) + "</tr></table>"
FIGURE = ('<img alt="a wide figure" src="data:image/svg+xml;utf8,<svg xmlns=%22http://www.w3.org/2000/svg%22 '
          'width=%221200%22 height=%2260%22><rect width=%221200%22 height=%2260%22 fill=%22teal%22/></svg>">')
# Where a notebook's output sits in a built page: a wide table in a cell's output (plain, or in a box that hides
# what overflows it), and a wide figure.
PAGES = {"table.html": f'<div class="cell_output">{TABLE}</div>',
         "hidden.html": f'<div class="cell_output" style="overflow: hidden">{TABLE}</div>',
         "figure.html": f'<div class="cell_output">{FIGURE}</div>',
         "narrow.html": "<div class=\"cell_output\"><table><tr><td>a</td><td>b</td></tr></table></div>"}


def write_site(folder, stylesheet: bool):
    """The pages of `PAGES` under `folder`, each a phone-ready page (`<meta name="viewport">`), linking the book's
    stylesheet when `stylesheet`."""
    (folder / "_static").mkdir(parents=True)
    shutil.copy(ROOT / "_static" / "e2u.css", folder / "_static" / "e2u.css")
    link = '<link rel="stylesheet" href="_static/e2u.css">' if stylesheet else ""
    for name, body in PAGES.items():
        (folder / name).write_text('<!DOCTYPE html><html><head><meta charset="utf-8">'
                                   '<meta name="viewport" content="width=device-width, initial-scale=1">'
                                   f"<title>{name}</title>{link}</head><body><main><article><p>Text.</p>{body}"
                                   "</article></main></body></html>")
    return folder


def problems(site) -> dict[str, list[str]]:
    """{page: its problems at a phone's width, and at the desktop's}."""
    found = {}
    with site_check.served(site) as base, site_check.browser() as driver:
        for page in PAGES:
            phone = site_check.phone_problems(driver, base, page)
            driver.get(base + page)
            found[page] = [p.what for p in phone + site_check.layout_problems(driver, page)]
    return found


def test_a_wide_table_or_figure_fails_at_a_phones_width_without_the_books_stylesheet(tmp_path):
    found = problems(write_site(tmp_path, stylesheet=False))
    width = site_check.PHONE_WIDTH
    assert any(w.startswith(f"at {width} px: a table") and "runs off the" in w for w in found["table.html"]), found
    assert any(w.startswith(f"at {width} px: the page is") for w in found["table.html"]), found
    assert any(w.startswith(f"at {width} px: a table") and "is cut" in w for w in found["hidden.html"]), found
    assert any(w.startswith("a table") and "is cut" in w for w in found["hidden.html"]), found  # at the desktop too
    assert any(w.startswith(f"at {width} px: a figure 1200 px wide runs off") for w in found["figure.html"]), found
    assert found["narrow.html"] == [], found


def test_the_books_stylesheet_makes_every_table_and_figure_fit(tmp_path):
    assert problems(write_site(tmp_path, stylesheet=True)) == {page: [] for page in PAGES}


def test_the_phone_pages_are_the_intro_the_claims_and_one_results_page():
    pages = ["book/claims.html", "book/intro.html", "book/results/finetuned.html", "book/results/pretrained.html",
             "book/summary.html", "index.html"]
    assert site_check.phone_pages(pages) == ["book/intro.html", "book/claims.html", "book/results/finetuned.html"]


def test_a_line_break_pandas_wrote_in_an_answer_is_not_tex_but_a_formula_in_a_cell_is(tmp_path):
    cells = {"answer.html": "<table><tr><td>ability\\nedayeday and\\tmore</td></tr></table>",
             "formula.html": "<table><tr><td>\\(1 - \\text{Rouge1}\\)</td></tr></table>",
             "prose.html": "<p>the key \\frac{1}{N} in a sentence</p>"}
    for name, body in cells.items():
        (tmp_path / name).write_text(f"<!DOCTYPE html><html><body><main><article>{body}</article></main></body></html>")
    with site_check.served(tmp_path) as base, site_check.browser() as driver:
        found = {}
        for name in cells:
            driver.get(base + name)
            found[name] = site_check.raw_tex_problems(driver, name)
    assert found["answer.html"] == [], found
    assert found["formula.html"] and found["prose.html"], found
