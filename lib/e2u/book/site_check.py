"""The built book checked as a reader's browser shows it: every page opened in headless Chromium.

A page fails on: an error in the browser console; a link to a page or file of the site that does not exist;
an image that did not load (a figure that did not render); the text a figure leaves when it is not drawn
(`<Figure size ...>`); an absolute path of the machine that built it; a table or figure the reader cannot see
whole (cut by a container that hides its overflow, or running off the page with nothing to scroll it), or a page
wider than the screen; a request to another host (the book is read offline: its scripts, styles, fonts and
MathJax are the site's own); an equation the browser did not typeset, or TeX left as text (`\\frac`, `\\(`).
`check_site` serves the site on localhost (pages read over http, as a reader's browser reads them) and returns
every problem of every page at a desktop's width, and the layout problems of the intro, the claims chapter and
a results page at a phone's (`PHONE_WIDTH`); `screenshot` saves a page as PNG, at either width. The browser has no network whatever the machine
has: every request to another host goes to a proxy that is not there (loopback, the site, bypasses proxies).

Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`) and selenium;
`browser_missing` says what is absent, so that a test can skip with that message.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import unquote, urldefrag, urlparse

from e2u.book import site_scripts

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# As this machine's notes start Chromium: no sandbox (root), no GPU, no background connections (closed network).
# The proxy on the discard port takes every request to another host and answers none: a page reads as it does
# offline, on a machine with a network too (Chromium never sends loopback, where the site is served, to a proxy).
NO_NETWORK = "--proxy-server=http://127.0.0.1:9"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000", NO_NETWORK)
PHONE_WIDTH, PHONE_HEIGHT = 390, 844  # a phone's viewport in CSS pixels (a recent iPhone's)
MATH_SECONDS = 20  # how long a page's equations may take to be typeset (MathJax works after the page has loaded)


@dataclass(frozen=True)
class Problem:
    page: str  # the page's path inside the site
    what: str


def browser_missing() -> str:
    """Why the browser check cannot run here ('' when it can)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file() and not shutil.which(Path(p).name)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return f"browser check needs {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)" if missing else ""


@contextmanager
def served(site: Path) -> Iterator[str]:
    """`site` served over http on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is the problems, not the requests
        pass


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium driven by chromedriver, its console collected."""
    from selenium import webdriver  # optional: the test extra (the site check runs a browser)
    from selenium.webdriver.chrome.service import Service  # optional: the test extra (the site check runs a browser)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})  # console, requests
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the built site, relative to it (Sphinx's search and index pages included)."""
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if "_static" not in p.parts)


def page_problems(driver, base: str, site: Path, page: str, forbidden: Sequence[str]) -> list[Problem]:
    """Open `page` and report what a reader would see go wrong (the module's list)."""
    driver.get_log("performance")  # the previous page's requests, read and dropped
    untypeset = _open(driver, base + page)
    facts = driver.execute_script(site_scripts.PAGE_FACTS)
    problems = [Problem(page, f"console: {entry['message']}") for entry in driver.get_log("browser")
                if entry.get("level") == "SEVERE" and not _offline_fetch(entry["message"], base)]
    problems += [Problem(page, f"image did not load: {src}") for src, loaded in facts["images"] if not loaded]
    for href in facts["links"]:
        target = _local_target(href, base, site)
        if target is not None and not target.exists():
            problems.append(Problem(page, f"broken link: {href[len(base):]}"))
    if "<Figure size" in facts["text"]:
        problems.append(Problem(page, "a figure was not drawn (its text '<Figure size ...>' is shown)"))
    for path in forbidden:
        if path and path in facts["html"]:
            problems.append(Problem(page, f"an absolute path of the build machine appears: {path}"))
    problems += layout_problems(driver, page)
    problems += [Problem(page, f"a request to another host (a reader offline does not get it): {url}")
                 for url in requested(driver) if not _own(url, base)]
    problems += [Problem(page, f"an equation was not typeset: {tex}") for tex in untypeset]
    problems += raw_tex_problems(driver, page)
    return problems


def raw_tex_problems(driver, page: str) -> list[Problem]:
    """TeX a reader sees as text on the page the driver shows: a control word or a math delimiter outside code."""
    return [Problem(page, f"TeX shown as text: {text}") for text in driver.execute_script(site_scripts.RAW_TEX)]


def layout_problems(driver, page: str, at: str = "") -> list[Problem]:
    """The tables and figures of the open `page` that a reader cannot see whole, and the page itself when it is wider
    than the viewport (`site_scripts.FIT`); `at` starts each problem (the viewport's width where it is not the desktop's)."""
    fit = driver.execute_script(site_scripts.FIT)
    page_width = fit["width"]
    problems = []
    for kind, width, what, *container in fit["found"]:
        if what == "cut":
            text = f"a {kind} {width} px wide is cut: a container {container[0]} px wide hides what overflows it"
        elif what == "off":
            text = f"a {kind} {width} px wide runs off the {page_width} px page with no scroll container"
        elif what == "scroller off":
            text = f"a {kind} {width} px wide scrolls in a container that runs off the {page_width} px page"
        else:
            text = f"the page is {width} px wide, wider than the {page_width} px screen"
        problems.append(Problem(page, at + text))
    return problems


@contextmanager
def phone(driver, width: int = PHONE_WIDTH, height: int = PHONE_HEIGHT) -> Iterator[None]:
    """The browser showing pages as a phone does (DevTools' device emulation: the viewport's CSS width, touch
    layout, the page's own `<meta name="viewport">` obeyed), back to the desktop window after."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def phone_pages(pages: Sequence[str]) -> list[str]:
    """The pages checked at a phone's width too: the intro, the claims chapter and the first results page, those
    the site has."""
    results = [p for p in pages if p.startswith("book/results/")][:1]
    return [p for p in ("book/intro.html", "book/claims.html") if p in pages] + results


def phone_problems(driver, base: str, page: str, width: int = PHONE_WIDTH) -> list[Problem]:
    """`page` opened at a phone's width (`phone`): its tables and figures that do not fit (`layout_problems`)."""
    with phone(driver, width):
        _open(driver, base + page)
        return layout_problems(driver, page, at=f"at {width} px: ")


def _open(driver, url: str) -> list[str]:
    """Open `url` and wait for its body, then for its equations to be typeset; the TeX of those that were not."""
    driver.get(url)
    loaded = "return document.readyState === 'complete' && document.body !== null"
    for _ in range(300):  # up to 30 s: on a loaded machine `get` can return before the page has a body
        if driver.execute_script(loaded):
            break
        time.sleep(0.1)
    untypeset = driver.execute_script(site_scripts.UNTYPESET)
    deadline = time.monotonic() + MATH_SECONDS
    while untypeset and time.monotonic() < deadline:
        time.sleep(0.1)
        untypeset = driver.execute_script(site_scripts.UNTYPESET)
    return untypeset


def requested(driver) -> list[str]:
    """The URLs the browser requested since the performance log was last read (Chrome's DevTools events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return list(dict.fromkeys(urls))


def _own(url: str, base: str) -> bool:
    """A request the site answers itself, or one that needs no host (inline data, a blob the page made)."""
    return url.startswith(base) or url.split(":", 1)[0] in ("data", "blob", "about")


def _offline_fetch(message: str, base: str) -> bool:
    """A console error for a resource of another host that could not be fetched: the request itself is the
    problem reported (`a request to another host`), once."""
    return not message.startswith(base) and "net::ERR_" in message


def _local_target(href: str, base: str, site: Path) -> Path | None:
    """The file a link of the site points to, or None for an outside link or an in-page anchor."""
    url, _ = urldefrag(href)
    if not url.startswith(base):
        return None
    path = unquote(urlparse(url).path).lstrip("/")
    target = site / path
    return target / "index.html" if not path or target.is_dir() else target


def check_site(site: Path, forbidden: Sequence[str] = ()) -> list[Problem]:
    """Every problem of every page of the built site at `site` (its `_build/html`) at the desktop's width, and the
    tables and figures that do not fit a phone's width on the intro, the claims chapter and a results page."""
    site = Path(site)
    problems: list[Problem] = []
    with served(site) as base, browser() as driver:
        pages = site_pages(site)
        for page in pages:
            problems += page_problems(driver, base, site, page, forbidden)
        for page in phone_pages(pages):
            problems += phone_problems(driver, base, page)
    return problems


def screenshot(site: Path, page: str, out: Path, width: int | None = None) -> Path:
    """`page` of the built site as a PNG at `out`, the whole page's height: in the desktop window, or as a phone
    `width` CSS pixels wide shows it (`phone`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with served(Path(site)) as base, browser() as driver:
        if width is None:
            _open(driver, base + page)  # its equations typeset, as a reader sees them
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, min(max(height, 800), 12000))
            driver.save_screenshot(str(out))
            return out
        with phone(driver, width):
            _open(driver, base + page)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            with phone(driver, width, min(max(height, PHONE_HEIGHT), 12000)):
                driver.save_screenshot(str(out))
    return out
