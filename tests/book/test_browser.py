"""The built book in headless Chromium: every page opens without a console error, a broken link or image, a
figure left undrawn, a path of the build machine or a table running off the page; screenshots of the results
and claims pages are saved under _build/screenshots/. Skipped, saying why, where Chromium is absent."""

from __future__ import annotations

import os

import pytest
from test_book import build_tiny_book

from e2u.book import site_check
from e2u.files import SOURCE_ROOT as ROOT
from e2u.files import e2u_home

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(site_check.browser_missing()), reason=site_check.browser_missing() or "-")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    study, results, site = build_tiny_book(tmp)
    forbidden = [str(tmp), str(ROOT), str(e2u_home()), os.path.expanduser("~") + "/"]
    return site / "_build" / "html", forbidden


def test_every_page_of_the_built_book_reads_cleanly_in_a_browser(built):
    html, forbidden = built
    pages = site_check.site_pages(html)
    assert any(p.startswith("book/runs/") for p in pages) and "book/claims.html" in pages
    problems = site_check.check_site(html, forbidden)
    assert not problems, "\n".join(f"{p.page}: {p.what}" for p in problems)
    shots = ROOT / "_build" / "screenshots"
    results = [p for p in pages if p.startswith("book/results/")]
    assert results, "no results chapter per setting"
    for page in ["book/summary.html", *results, "book/claims.html"]:
        out = site_check.screenshot(html, page, shots / page.removeprefix("book/").replace("/", "-").replace(".html", ".png"))
        assert out.stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_check_fails_on_a_machine_path_and_on_a_wide_table_without_a_scroll_container(built, tmp_path):
    import shutil

    html, forbidden = built
    broken = tmp_path / "html"
    shutil.copytree(html, broken)
    page = broken / "book" / "summary.html"
    wide = "<table><tr>" + "".join(f"<td>column{i:03d}_with_a_long_name</td>" for i in range(80)) + "</tr></table>"
    text = page.read_text().replace("</main>", f'<div style="overflow: visible">{wide}</div>'
                                               f"<p>results in {forbidden[0]}/results</p></main>", 1)
    page.write_text(text)
    (broken / "book" / "claims.html").write_text('<html><body><main><a href="nowhere.html">x</a>'
                                                '<img src="missing.png"></main></body></html>')
    problems = {(p.page, p.what.split(":")[0]) for p in site_check.check_site(broken, forbidden)}
    assert ("book/summary.html", "an absolute path of the build machine appears") in problems
    assert any(page == "book/summary.html" and what.startswith("a table") for page, what in problems)
    assert ("book/claims.html", "broken link") in problems and ("book/claims.html", "image did not load") in problems
