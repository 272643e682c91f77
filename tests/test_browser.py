"""The quickstart notebook in a real browser: Voilà serves it, headless Chromium draws the panel.

The page may load nothing from the internet (every other request is aborted), so
the widgets must render from what Voilà serves itself. A screenshot is kept in
test-artifacts/; with GLOWLAB_UPDATE_SCREENSHOT=1 the panel's part of it becomes
docs/img/quickstart.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT
from glowlab.cluster import free_port, wait_reachable
from jupyter_kernel import kernel_path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
DOC_IMAGE = ROOT / "docs" / "img" / "quickstart.png"
WAIT_MS = 150_000


@pytest.fixture
def voila(tmp_path: Path) -> Iterator[str]:
    """Voilà serving the quickstart on a free loopback port; its URL."""
    port = free_port()
    env = {**os.environ, "JUPYTER_PATH": kernel_path(tmp_path / "jupyter"),
           "GLOWLAB_HOME": str(tmp_path / "home")}
    env.pop("GLOW_SMTP_SERVER", None)
    log = tmp_path / "voila.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_reachable(f"127.0.0.1:{port}", timeout=60)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()  # Voilà shuts its kernel down on TERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log.read_text(errors="replace")[-3000:])  # shown when the test fails


def test_quickstart_renders_the_live_panel_in_chromium(voila: str) -> None:
    assert Path(CHROMIUM).is_file(), (f"{CHROMIUM} is missing: run 'make test' (it installs it) "
                                      "or 'sudo apt-get install chromium'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 2800})
            blocked: list[str] = []
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(voila) else
                       (blocked.append(route.request.url), route.abort())[1])
            page.goto(voila, wait_until="commit", timeout=WAIT_MS)
            check_page(page)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "quickstart.png")
            save_panel(page, ARTIFACTS / "quickstart-panel.png")
        finally:
            browser.close()
    if os.environ.get("GLOWLAB_UPDATE_SCREENSHOT"):  # refresh the docs' picture on request only
        DOC_IMAGE.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "quickstart-panel.png", DOC_IMAGE)
    print("requests kept from the internet:", blocked)


def check_page(page) -> None:
    """The panel turned green with every row done; the results table and the plot are shown."""
    panel = page.locator(".glowlab-panel")
    page.locator(".glowlab-panel .progress-bar-success").wait_for(timeout=WAIT_MS)
    assert "16 done" in panel.inner_text() and "all done" in panel.inner_text()
    bar = panel.locator(".progress-bar-success").first.bounding_box()
    track = panel.locator(".widget-hprogress .progress").first.bounding_box()
    assert bar and track and bar["width"] >= 0.98 * track["width"]  # a full, drawn bar
    assert panel.locator("table.glowlab-table").is_visible()  # the latest results
    assert all(panel.get_by_role("button", name=name).is_visible()
               for name in ("Pause", "Resume", "Retry failed", "Cancel"))
    results = page.locator("table.dataframe", has_text="abs_error")
    results.wait_for(timeout=WAIT_MS)
    assert results.is_visible() and results.locator("tbody tr", has_text="done").count() == 16
    plot = page.locator("img[src^='data:image/png']")
    plot.wait_for(timeout=WAIT_MS)
    assert plot.bounding_box()["height"] > 100


def save_panel(page, path: Path) -> None:
    """The sweep's section: heading, text and the panel with its latest results."""
    heading = page.get_by_role("heading", name="The sweep, with live progress").bounding_box()
    panel = page.locator(".glowlab-panel").bounding_box()
    top = heading["y"] - 12
    page.screenshot(path=path, clip={"x": 0, "y": top, "width": 1000,
                                     "height": panel["y"] + panel["height"] + 16 - top})
