"""Open a page from disk in headless Chromium with the network off: its DOM after the page's
scripts ran, and a screenshot. Used by the report tests."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

INSTALL = "apt-get update && apt-get install -y chromium"  # what `make test` runs where it is missing
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium() -> str:
    """The browser binary, or a skip naming the install command (a failure where the test run
    requires the browser: ``TPT_REQUIRE_BROWSER=1``, set by .ci/run)."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = f"headless Chromium not found (tried {', '.join(NAMES)}): install it with `{INSTALL}`"
    if os.environ.get("TPT_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def _run(arguments, folder: pathlib.Path) -> str:
    command = [chromium(), *FLAGS, f"--user-data-dir={folder / 'profile'}", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def render(page, folder, width: int = 1200, height: int = 2400) -> tuple[str, pathlib.Path]:
    """(the DOM after the page's load handlers ran, the screenshot PNG) of ``page`` opened as a
    ``file://`` URL."""
    page, folder = pathlib.Path(page).resolve(), pathlib.Path(folder)
    url = page.as_uri()
    dom = _run(["--virtual-time-budget=10000", "--dump-dom", url], folder)
    shot = folder / (page.stem + ".png")
    _run([f"--window-size={width},{height}", f"--screenshot={shot}", url], folder)
    assert shot.is_file() and shot.stat().st_size > 5000, "no screenshot written"
    return dom, shot


class Elements(HTMLParser):
    """Every start tag of a DOM as (tag, {attribute: value}), and its text."""

    def __init__(self, html: str):
        super().__init__()
        self.elements, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag, **attrs):
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def check_page(dom: str) -> Elements:
    """What every report page must hold, checked from the browser's DOM: the load handler ran,
    every image loaded with a width, every in-page link has its target, nothing from the network."""
    page = Elements(dom)
    assert page.all("body", **{"data-ready": "yes"}), "the page's load handler did not run"
    images = page.all("img")
    for image in images:
        assert image["src"].startswith("data:image/"), f"image not embedded: {image['src'][:80]}"
        assert int(image.get("data-natural-width", 0)) > 0, f"image not loaded: {image.get('alt')}"
    ids = {a["id"] for _, a in page.elements if "id" in a}
    for _, attrs in page.elements:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not value.startswith(("http:", "https:", "//")), f"network resource {value}"
            if key == "href" and value.startswith("#"):
                assert value[1:] in ids, f"link {value} has no target"
    assert all("src" not in a for a in page.all("script")), "external script"
    assert not page.all("link"), "external stylesheet or font"
    return page
