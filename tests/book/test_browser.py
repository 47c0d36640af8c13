"""The built book in headless Chromium: every page opens without a console error, a broken link or image, a
figure left undrawn, a path of the build machine, a table or figure cut or running off the page (at a desktop's
width, and at a phone's for the intro, the claims and a results page), a request to another host or an equation
left as TeX; screenshots of the results and claims pages, at both widths, are saved under _build/screenshots/. The
browser reaches no host but loopback, so equations are shown as a reader offline sees them. Skipped, saying why,
where Chromium is absent."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from test_book import build_tiny_book
from test_offline_math import EQUATIONS, build_math_book

from e2u.book import site_check
from e2u.files import SOURCE_ROOT as ROOT
from e2u.files import e2u_home

pytestmark = [pytest.mark.slow, pytest.mark.site,
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
        name = page.removeprefix("book/").replace("/", "-").replace(".html", "")
        out = site_check.screenshot(html, page, shots / f"{name}.png")
        assert out.stat().st_size > 10_000  # a rendered page, not a blank one
        phone = site_check.screenshot(html, page, shots / f"{name}-phone.png", width=site_check.PHONE_WIDTH)
        assert phone.stat().st_size > 10_000


def test_the_check_fails_on_a_machine_path_and_on_a_wide_table_cut_by_its_container(built, tmp_path):
    html, forbidden = built
    broken = tmp_path / "html"
    shutil.copytree(html, broken)
    page = broken / "book" / "summary.html"
    wide = "<table><tr>" + "".join(f"<td>column{i:03d}_with_a_long_name</td>" for i in range(80)) + "</tr></table>"
    text = page.read_text().replace("</article>", f'<div style="overflow: hidden; max-width: 400px">{wide}</div>'
                                               f"<p>results in {forbidden[0]}/results</p></article>", 1)
    page.write_text(text)
    (broken / "book" / "claims.html").write_text('<html><body><main><a href="nowhere.html">x</a>'
                                                '<img src="missing.png"></main></body></html>')
    problems = {(p.page, p.what.split(":")[0]) for p in site_check.check_site(broken, forbidden)}
    assert ("book/summary.html", "an absolute path of the build machine appears") in problems
    assert any(page == "book/summary.html" and what.startswith("a table") for page, what in problems)
    assert ("book/claims.html", "broken link") in problems and ("book/claims.html", "image did not load") in problems


@pytest.fixture(scope="module")
def math_site(tmp_path_factory):
    return build_math_book(tmp_path_factory.mktemp("math"))


def typeset(driver, base: str, page: str) -> tuple[int, str, list[str]]:
    """`page` opened and its equations waited for: how many MathJax typeset, the text the reader sees, and every URL
    the browser requested."""
    site_check.requested(driver)  # the previous page's requests, dropped
    driver.get(base + page)
    for _ in range(200):  # MathJax typesets after the page has loaded
        count = driver.execute_script("return document.querySelectorAll('.math mjx-container').length")
        if count >= EQUATIONS[page]:
            break
        time.sleep(0.1)
    return count, driver.execute_script("return document.body.innerText"), site_check.requested(driver)


def test_equations_are_typeset_by_the_sites_own_mathjax_with_no_network(math_site):
    """In the site check's browser, which reaches no host but loopback: the Markdown chapter's and the notebook's
    equations are MathJax's, no TeX is left as text, and no request left the site."""
    with site_check.served(math_site) as base, site_check.browser() as driver:
        for page, equations in EQUATIONS.items():
            count, text, requests = typeset(driver, base, page)
            assert count == equations, f"{page}: {count} of {equations} equations typeset"
            assert not re.search(r"\\(frac|mathcal|left|sum|partial)|\\\(|\\\[|\$\$", text), f"{page} shows TeX: {text}"
            assert requests and all(url.startswith(base) for url in requests), f"{page} requested {requests}"
            if equations:
                assert any("/_static/mathjax/" in url for url in requests), f"{page} loaded no MathJax of its own"
    assert not site_check.check_site(math_site)


def test_the_check_fails_on_equations_left_to_a_cdn(math_site, tmp_path, monkeypatch):
    """The site as it was built before MathJax came with it: the page asks jsdelivr for MathJax, which the check's
    browser cannot reach whatever the machine's network, so its equations stay TeX."""
    monkeypatch.setattr(site_check, "MATH_SECONDS", 3)
    broken = tmp_path / "html"
    shutil.copytree(math_site, broken)
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    for page in ("equations.html", "notebook.html"):
        (broken / page).write_text((broken / page).read_text().replace("_static/mathjax/tex-chtml.js", cdn))
    problems = {(p.page, p.what.split(":")[0]) for p in site_check.check_site(broken)}
    for page in ("equations.html", "notebook.html"):
        assert {(page, "a request to another host (a reader offline does not get it)"),
                (page, "an equation was not typeset"), (page, "TeX shown as text")} <= problems, problems
    assert not any(page == "plain.html" for page, _ in problems)


def test_the_checks_browser_reaches_no_host_but_loopback(math_site):
    """Whatever the machine's network: another host, by name or by address, is refused at the check's dead proxy
    (on this offline machine the request would fail anyway, but with another error), and the site still opens."""
    from selenium.common.exceptions import WebDriverException

    with site_check.served(math_site) as base, site_check.browser() as driver:
        for url in ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", "http://93.184.215.14/"):
            with pytest.raises(WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
                driver.get(url)
        driver.get(base + "plain.html")
        assert "Prose alone." in driver.execute_script("return document.body.innerText")
