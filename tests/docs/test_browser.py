"""The built site in a browser: served on 127.0.0.1, opened in headless Chromium (Debian's chromium and
chromium-driver, through Selenium with the driver's path given, so Selenium Manager never downloads
anything). Each tutorial page shows its figures, the search box finds "clip_grad_norm_", and no
link or image of any page points at a file the site lacks."""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import pathlib
import posixpath
import re
import threading
import urllib.parse

import pytest

from docs_build import ROOT

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMEDRIVER = pathlib.Path("/usr/bin/chromedriver")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(built_site):
    handler = functools.partial(_Quiet, directory=str(built_site.path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"headless Chromium is not installed ({', '.join(missing)} missing; apt-get install chromium chromium-driver)"
        print(reason)
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should anything call it, must not go online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _tutorial_urls() -> list[str]:
    return [f"tutorials/{p.stem}/" for p in sorted((ROOT / "docs" / "tutorials").glob("[0-9][0-9]-*.py"))]


def _images(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('article img')).map(i => "
        "({src: i.currentSrc.slice(0, 60), complete: i.complete, width: i.naturalWidth}));")


def _open(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_each_tutorial_page_shows_its_figures_and_formulas(served, browser):
    from selenium.webdriver.support.ui import WebDriverWait
    urls = _tutorial_urls()
    if not urls:
        print("docs/tutorials has no NN-*.py tutorial yet: no tutorial page to open")
    for url in urls:
        _open(browser, served + url)
        images = _images(browser)
        assert images, f"{url}: no figure"
        bad = [i for i in images if not i["complete"] or i["width"] == 0]
        assert not bad, f"{url}: figures that did not load: {bad}"
        assert "Traceback" not in browser.find_element("css selector", "article").text, url
        source = (ROOT / "docs" / "tutorials" / (url.split("/")[1] + ".py")).read_text(encoding="utf-8")
        if re.search(r"^# .*\$[^$\s][^$]*\$", source, re.M):  # formulas in its text: MathJax typesets them
            WebDriverWait(browser, 60).until(lambda d: d.execute_script(
                "return document.querySelectorAll('article .MathJax, article .MathJax_Display, "
                "article .MathJax_CHTML, article .MathJax_SVG').length"), f"{url}: no formula typeset")
            raw = browser.execute_script(
                "return Array.from(document.querySelectorAll('.jp-RenderedMarkdown p'))"
                ".filter(p => /\\$[^$\\s][^$]*\\$/.test(p.innerText)).length")
            assert raw == 0, f"{url}: {raw} paragraphs still show raw $...$ TeX"
            text = browser.find_element("css selector", "article").text
            assert "Math Processing Error" not in text and "Math input error" not in text, url


def test_the_engine_page_shows_its_graph_pictures(served, browser):
    _open(browser, served + "contributing/engine/")
    images = _images(browser)
    assert len(images) >= 3
    assert all(i["complete"] and i["width"] > 0 for i in images), images


def test_search_finds_clip_grad_norm(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    _open(browser, served)
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    if not box.is_displayed():  # a narrow window: the search box opens from the header's button
        browser.find_element(By.CSS_SELECTOR, "label.md-header__button[for='__search']").click()
        WebDriverWait(browser, 10).until(lambda d: box.is_displayed())
    box.click()
    box.send_keys("clip_grad_norm_")

    def result_links(d):
        links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
        return links or False

    links = WebDriverWait(browser, 60).until(result_links)
    assert any("/api/nn/utils-functions/" in link for link in links), links
    first = browser.find_element(By.CSS_SELECTOR, ".md-search-result__item a")
    first.click()
    WebDriverWait(browser, 30).until(lambda d: "clip_grad_norm_" in d.find_element(By.TAG_NAME, "article").text)


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def _local_target(page: str, target: str) -> str | None:
    """The site path a link of ``page`` (a site path such as "api/nn/Linear/index.html") points at,
    or None when it leaves the site (another scheme or host) or stays on the page (#anchor)."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith(("#", "data:", "mailto:", "javascript:")):
        return None
    path = urllib.parse.unquote(parts.path)
    if not path:
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if not path.startswith("/") \
        else path.lstrip("/")
    if path.endswith("/") or joined in (".", ""):
        joined = posixpath.join(joined, "index.html") if joined not in (".", "") else "index.html"
    return joined


def test_no_internal_link_is_broken(built_site):
    site = built_site.path
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert len(pages) > 50
    broken = []
    for page in pages:
        parser = _Links()
        parser.feed((site / page).read_text(encoding="utf-8"))
        for target in parser.targets:
            local = _local_target(page, target)
            if local is None:
                continue
            f = site / local
            if local.startswith("..") or not (f.is_file() or (f.is_dir() and (f / "index.html").is_file())):
                broken.append(f"{page}: {target}")
    assert not broken, f"{len(broken)} broken links, e.g.: " + "; ".join(broken[:20])


def test_the_link_checker_resolves_links_as_a_browser_does():
    assert _local_target("api/nn/Linear/index.html", "../../../assets/x.css") == "assets/x.css"
    assert _local_target("api/nn/Linear/index.html", "../Conv2d/") == "api/nn/Conv2d/index.html"
    assert _local_target("index.html", "https://example.org/") is None
    assert _local_target("index.html", "#top") is None
    assert _local_target("index.html", "./") == "index.html"
