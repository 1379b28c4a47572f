"""The static preview in real headless Chromium: the index lists subscribers, emails fit a phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import chromium
from conftest import run

AT = "2026-11-27T09:00:00+00:00"


@pytest.fixture(scope="module")
def preview_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_config

    folder = tmp_path_factory.mktemp("proj")
    project = write_config(folder)
    out = folder / "preview"
    assert run("--file", str(project), "preview", "--out", str(out), "--at", AT) == 0
    return out


def test_index_lists_subscribers_and_links_to_the_email(preview_dir: Path) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto((preview_dir / "index.html").as_uri())
        rows = page.locator("tbody tr")
        assert rows.count() == 3
        text = page.locator("tbody").inner_text()
        assert "ada@example.org" in text and "Test Digest" in text and "nothing to send" in text
        page.locator("td a", has_text="HTML").first.click()
        page.wait_for_url("**/ada@example.org.html")
        assert page.url.endswith("ada@example.org.html")
        assert page.locator("h1").inner_text() == "Test Digest"
        assert page.locator("strong.hit").count() > 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_email_fits_a_375px_phone_without_horizontal_scrolling(preview_dir: Path, scheme: str,
                                                               tmp_path: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)  # type: ignore[arg-type]
        page.goto((preview_dir / "ada@example.org.html").as_uri())
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        expected_dark = scheme == "dark"
        r, g, b = [int(x) for x in background[background.index("(") + 1:-1].split(",")[:3]]
        assert (r + g + b < 200) is expected_dark
        page.screenshot(path=str(tmp_path / f"phone-{scheme}.png"), full_page=False)
        assert (tmp_path / f"phone-{scheme}.png").stat().st_size > 1000
