"""The documentation site: it builds warning-free, every internal link resolves, and it renders in a real browser.

The site is built here (``make docs``'s command, without network where ``unshare -n`` is allowed) when
``docs/_build/html`` is missing or older than any of its sources, so ``make test`` covers it from a fresh
clone. The browser is Debian's ``chromium``, driven by
Playwright's Python client through ``executable_path`` (Playwright's own browser download is never used);
``.ci/run`` installs it, and without it the browser test skips saying so (in CI it fails instead).
Screenshots go to ``docs/_build/screenshots``.
"""

from __future__ import annotations

import html.parser
import http.server
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
SHOTS = DOCS / "_build" / "screenshots"
# -E: every page is read again, so a warning of a page unchanged since a failed build is raised again.
BUILD = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(HTML)]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _sources() -> list[pathlib.Path]:
    """Everything the site is made from: its pages, extensions and pictures' code, the package's docstrings."""
    skip = (DOCS / "_build", DOCS / "reference" / "api")
    files = [p for p in DOCS.rglob("*") if p.is_file() and not any(s in p.parents for s in skip)]
    return files + list((ROOT / "arraymel").rglob("*.py"))


def _stale() -> bool:
    # Sphinx writes the pages (and .buildinfo) even when -W fails the build: only a build that succeeded
    # leaves this stamp (here, or `make docs`), so a failed build is never taken for a fresh site.
    stamp = HTML / ".build-ok"
    if not (HTML / "index.html").exists() or not stamp.exists():
        return True
    built = stamp.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _sources())


def _offline_prefix() -> list[str]:
    """``unshare -n``: the build runs with no network at all where the kernel lets us (root, or user
    namespaces), which proves it fetches nothing; elsewhere it runs as it is."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def build_site() -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "KERAS_BACKEND": "numpy"}
    return subprocess.run(_offline_prefix() + BUILD, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def site() -> pathlib.Path:
    """The built site, rebuilt first when stale; a build with any warning fails here with its log."""
    if _stale():
        proc = build_site()
        assert proc.returncode == 0, f"the docs build failed (warnings are errors):\n{proc.stdout}\n{proc.stderr}"
        (HTML / ".build-ok").touch()
    return HTML


# ----------------------------------------------------------------------------------------- link check
class _Page(html.parser.HTMLParser):
    """The ids of a page and the internal links and images it points at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag/attribute, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        for attr in ("href", "src"):
            url = a.get(attr)
            if url and not (tag == "link" and a.get("rel") in ("preconnect", "dns-prefetch")):
                self.links.append((f"{tag}[{attr}]", url))


def _parse(path: pathlib.Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(root: pathlib.Path) -> list[str]:
    """Every internal link, anchor and image of the HTML under ``root`` that does not resolve (external URLs are not fetched)."""
    # the site's pages; _static/ holds the theme's assets (its Jinja macro file is not a page)
    pages = {p: _parse(p) for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts}
    broken = []
    for path, page in pages.items():
        for where, url in page.links:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme or url.startswith("//"):
                continue  # http(s), mailto, data: not fetched here (the browser test forbids remote requests)
            target = path if not parts.path else (path.parent / urllib.parse.unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            rel = path.relative_to(root)
            if not target.exists():
                broken.append(f"{rel}: {where} {url!r}: no file {target}")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append(f"{rel}: {where} {url!r}: no id {parts.fragment!r} in {target.relative_to(root)}")
    return broken


def test_every_internal_link_anchor_and_image_resolves(site):
    assert broken_links(site) == []


def test_the_link_check_finds_a_broken_anchor_and_a_missing_image(tmp_path):
    """The checker itself: a page with a dangling anchor, a missing page and a missing image is reported thrice."""
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="#top">ok</a><a href="b.html#nowhere">x</a>'
                                     '<a href="c.html">y</a><img src="_images/none.png"><a href="https://x.invalid/">z</a>')
    (tmp_path / "b.html").write_text('<p id="here">B</p><a href="a.html#top">back</a>')
    found = broken_links(tmp_path)
    assert len(found) == 3 and any("nowhere" in f for f in found) and any("none.png" in f for f in found)


def test_every_public_name_has_a_reference_page(site):
    """Each name of each documented module's ``__all__`` (else its own public functions and classes) has its page.

    Worked out here independently of docs/_ext/arraymel_api.py, so a fault there shows.
    """
    import importlib
    import inspect

    modules = re.search(r"arraymel_api_modules = (\[.*?\])", (DOCS / "conf.py").read_text()).group(1)
    missing = []
    for modname in eval(modules):  # a literal list of strings in conf.py
        module = importlib.import_module(modname)
        names = [n for n in getattr(module, "__all__", ()) if not n.startswith("__")]
        if not hasattr(module, "__all__"):
            names = [n for n, obj in vars(module).items() if not n.startswith("_")
                     and (inspect.isfunction(obj) or inspect.isclass(obj))
                     and obj.__module__.startswith(modname)]
        for name in names:
            obj = getattr(module, name)
            pages = [f"{modname}.{name}"]
            if inspect.isclass(obj):  # and each of its own public methods
                pages += [f"{modname}.{name}.{m}" for m, v in vars(obj).items()
                          if (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod)))
                          and (not m.startswith("_") or m == "__call__")]
            missing += [p for p in pages if not (site / "reference" / "api" / "generated" / f"{p}.html").exists()]
    assert missing == []


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    bad = []
    for url in re.findall(r"\]\(([^)\s]+)\)", text):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme:
            continue
        target = ROOT / parts.path
        if not target.exists():
            bad.append(url)
        elif parts.fragment and target.suffix == ".md":
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
            if parts.fragment not in slugs:
                bad.append(url)
    assert bad == []


def _slug(heading: str) -> str:
    """A Markdown heading's anchor as GitHub and MyST (myst_heading_anchors) make it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# ----------------------------------------------------------------------------------------- real browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is its assertions
        pass


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on the loopback interface (as a reader gets it; the search page needs HTTP's fetches)."""
    handler = lambda *a, **k: _Quiet(*a, directory=str(site), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser_page(served, tmp_path_factory):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium in CI: .ci/run installs it with apt-get (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium): the browser test needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a new, empty user-data-dir
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.problems = []  # console errors, page errors, requests that leave the machine, failed requests
        page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url}"))
        page.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "data:", "about:"))
                or page.problems.append(f"remote request: {r.url}"))
        yield page
        context.close()


def _open(page, url: str, shot: str) -> dict:
    page.problems.clear()
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.ok, url
    images = page.evaluate("""() => Array.from(document.images).map(i => (
        {src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth}))""")
    page.screenshot(path=str(SHOTS / shot), full_page=True)
    return {"images": images, "title": page.title(), "problems": list(page.problems)}


@pytest.mark.parametrize("path, shot, min_images", [
    ("index.html", "home.png", 1),
    ("reference/api/generated/arraymel.mel_spectrogram.html", "api-mel_spectrogram.png", 0),
    ("how-to/keras.html", "howto-keras.png", 1),
    ("getting-started.html", "getting-started.png", 1),
    ("how-to/presets.html", "howto-presets.png", 1),
    ("how-to/benchmark.html", "howto-benchmark.png", 1),
    ("reference/cli.html", "cli.png", 0),
])
def test_page_renders_with_its_images_and_no_errors(browser_page, served, path, shot, min_images):
    got = _open(browser_page, f"{served}/{path}", shot)
    assert got["problems"] == []
    assert len(got["images"]) >= min_images
    assert [i["src"] for i in got["images"] if not (i["complete"] and i["width"] > 0)] == []
    assert "arraymel" in got["title"]


def test_api_page_shows_the_parameters(browser_page, served):
    browser_page.goto(f"{served}/reference/api/generated/arraymel.mel_spectrogram.html", wait_until="networkidle")
    text = browser_page.inner_text("main")
    for word in ("Parameters", "Returns", "Examples", "top_db", "sequence_stride", "fft_length"):
        assert word in text


def test_search_finds_top_db(browser_page, served):
    page = browser_page
    page.problems.clear()
    page.goto(f"{served}/search.html?q=top_db", wait_until="networkidle")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    results = page.locator("#search-results ul.search li a").evaluate_all("els => els.map(e => e.href)")
    page.screenshot(path=str(SHOTS / "search-top_db.png"), full_page=True)
    assert any("arraymel.mel_spectrogram" in r for r in results), results
    assert page.problems == []
