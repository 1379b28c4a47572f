"""The preview workbench (`preview --serve`) in real headless Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from browser import chromium
from newsletter.rendering import default_templates
from newsletter.workbench import Workbench, make_server

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The bundled example, with a template folder of its own, served on a free port."""
    shutil.copy(ROOT / "subscribers.example.yaml", tmp_path / "subscribers.yaml")
    shutil.copytree(ROOT / "data", tmp_path / "data")
    theme = tmp_path / "theme"
    theme.mkdir()
    shutil.copy(default_templates() / "issue.mjml.j2", theme / "issue.mjml.j2")
    config = tmp_path / "subscribers.yaml"
    config.write_text(config.read_text().replace("  timezone: UTC\n", "  timezone: UTC\n  templates: theme\n", 1))
    bench = Workbench(config, tmp_path / ".newsletter" / "state.sqlite3", {}, at=AT, fetch=True)
    server = make_server(bench, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", theme
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / ".newsletter" / "state.sqlite3").exists()  # nothing recorded


def frame_body(page):  # noqa: ANN001, ANN201
    return page.frame_locator("#frame").locator("body")


def test_workbench_lists_switches_and_reloads(workbench: tuple[str, Path], tmp_path: Path) -> None:
    url, theme = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        items = page.locator("#subscribers li")
        items.first.wait_for()
        assert [items.nth(i).get_attribute("data-email") for i in range(items.count())] == [
            "ada@example.org", "grace@example.org", "alan@example.org"]
        page.wait_for_function("document.getElementById('subject').textContent.includes('Daily Papers Digest')")
        sidebar = page.locator("#subscribers").inner_text()
        assert "5 papers" in sidebar and "KB" in sidebar and "10 new papers" in sidebar  # entries, size, subject
        ada_subject = page.locator("#subject").inner_text()
        assert "5 new papers" in ada_subject
        assert "KB of 102 KB" in page.locator("#meter-label").inner_text()
        assert frame_body(page).locator("h1").inner_text() == "Daily Papers Digest"

        # switch subscriber
        page.locator("#subscribers li[data-email='grace@example.org'] button").click()
        page.wait_for_function("!document.getElementById('subject').textContent.includes('5 new papers')")
        assert "10 new papers" in page.locator("#subject").inner_text()

        # width
        assert page.locator("#frame-wrap").evaluate("e => e.getBoundingClientRect().width") == 375
        page.click("#width-desktop")
        assert page.locator("#frame-wrap").evaluate("e => e.getBoundingClientRect().width") == 800
        page.click("#width-phone")

        # theme: the dark stylesheet applies inside the frame
        def frame_background() -> str:
            return frame_body(page).evaluate("b => getComputedStyle(b).backgroundColor")
        light = frame_background()
        page.click("#theme-dark")
        page.wait_for_function("document.body.dataset.theme === 'dark'")
        frame_body(page).locator("h1").wait_for()
        page.wait_for_timeout(300)
        dark = frame_background()
        assert light != dark and sum(int(x) for x in dark[dark.index("(") + 1:-1].split(",")[:3]) < 200
        page.click("#theme-light")

        # tabs
        page.click("#tab-text")
        assert page.locator("#panel-text").is_visible() and not page.locator("#panel-html").is_visible()
        assert "papers matched your profile" in page.locator("#panel-text").inner_text()
        page.click("#tab-headers")
        headers = page.locator("#panel-headers").inner_text()
        assert "List-Unsubscribe:" in headers and "To: Grace <grace@example.org>" in headers
        page.click("#tab-source")
        assert "Content-Type: multipart/alternative" in page.locator("#panel-source").inner_text()
        page.click("#tab-links")
        assert page.locator("#links li").count() > 0
        page.click("#tab-html")

        # editing a template reloads the open page by itself
        version = page.evaluate("document.body.dataset.version")
        source = (theme / "issue.mjml.j2").read_text()
        (theme / "issue.mjml.j2").write_text(source.replace("Why you got this:", "Picked for you:"))
        page.wait_for_function(f"document.body.dataset.version !== '{version}'", timeout=15000)
        frame_body(page).get_by_text("Picked for you:").first.wait_for(timeout=15000)
        assert frame_body(page).get_by_text("Why you got this:").count() == 0
        page.screenshot(path=str(tmp_path / "workbench.png"))


def test_email_at_375px_has_no_horizontal_scrolling(workbench: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        page.wait_for_function("document.getElementById('subject').textContent.includes('new papers')")
        frame_body(page).locator("h1").wait_for()
        frame = page.frame_locator("#frame")
        width = frame.locator("html").evaluate("h => h.scrollWidth")
        client = frame.locator("html").evaluate("h => h.clientWidth")
        assert client <= 375 and width <= client
        page.locator("#frame-wrap").screenshot(path=str(tmp_path / "phone.png"))
        assert (tmp_path / "phone.png").stat().st_size > 1000
