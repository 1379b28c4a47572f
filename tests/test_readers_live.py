"""The live preview and the browser's time zone on the sign-up and preference pages, in headless
Chromium against the real app (uvicorn, a real SQLite state): the script comes from the site under
the strict CSP (no inline script, no violation), the preview follows what is typed and shows query
errors with their column, the time zone is prefilled for a new reader and only offered to an
existing one; asking for a preview records nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from browser import chromium
from conftest import Recorder, free_port
from newsletter import signup
from newsletter.links import Links
from newsletter.store_readers import ReaderStore
from readers_kit import NOW, SECRET, app_for, dump, open_project, serving_on, write_project

ZONE = "Asia/Tokyo"


@pytest.fixture
def site(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> Iterator[dict[str, Any]]:
    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_server[1], web_port))
    with serving_on(app_for(dep, web_port), web_port) as url:
        yield {"url": url, "dep": dep, "links": Links(url, SECRET), "mail": smtp_server[0]}


def _expected(dep: Any, keywords: list[str]) -> list[str]:
    with ReaderStore(dep.state) as store:
        return [m.entry.title for m in signup.preview(signup.recent(store, NOW), {"keywords": keywords})]


def _watch(page: Page) -> list[str]:
    """Console errors and page errors (a CSP violation is reported as a console error)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _titles(page: Page) -> list[str]:
    return [re.sub(r" \(.*\)$", "", t) for t in page.locator("#live-preview ol li").all_inner_texts()]


def test_sign_up_page_previews_live_and_takes_the_browsers_time_zone(site: dict[str, Any]) -> None:
    url, dep = site["url"], site["dep"]
    before = dump(dep.state)
    with chromium() as browser:
        context = browser.new_context(timezone_id=ZONE)
        page = context.new_page()
        problems = _watch(page)
        answer = page.goto(f"{url}/subscribe")
        assert answer is not None and "script-src 'self'" in answer.headers["content-security-policy"]
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        expect(page.locator("#timezone")).to_have_value(ZONE)
        page.fill("#keywords", '"language model"')
        heading = page.locator("#live-preview h2")
        expected = _expected(dep, ['"language model"'])
        assert expected
        expect(heading).to_have_text(f"The last 7 days would have brought {len(expected)}"
                                     f"{'+' if len(expected) >= 10 else ''} paper{'' if len(expected) == 1 else 's'}")
        assert _titles(page) == expected
        page.fill("#keywords", '"language model\ntitle:diffusion')
        expect(page.locator("#live-preview .error")).to_have_text("Keywords, line 1: unclosed quote at column 1")
        assert page.locator("#live-preview ol").count() == 0
        page.fill("#keywords", "title:diffusion")
        expect(heading).to_contain_text("The last 7 days would have brought")
        assert _titles(page) == _expected(dep, ["title:diffusion"])
        page.check("#mode-trending")
        expect(page.locator("#live-preview li").first).to_be_visible()
        page.fill("#email", "x@example.org")
        page.get_by_role("button", name="Preview the last 7 days").click()  # the form's own preview ...
        page.locator("#live-preview h2").wait_for()
        expect(page.locator("#server-preview")).to_have_count(0)  # ... gives way to the live one: shown once
        expect(page.get_by_text("The last 7 days would have brought")).to_have_count(1)
        context.close()
    assert problems == []
    assert dump(dep.state) == before and site["mail"].messages == []


def test_the_preference_centre_previews_live_and_offers_the_browsers_zone(site: dict[str, Any]) -> None:
    manage = site["links"].manage("ada@example.org", 0)
    with chromium() as browser:
        context = browser.new_context(timezone_id=ZONE)
        page = context.new_page()
        problems = _watch(page)
        page.goto(manage)
        expect(page.locator("#live-preview h2")).to_contain_text("The last 7 days would have brought")
        assert _titles(page) == _expected(site["dep"], ['"language model"'])
        expect(page.locator("#timezone")).to_have_value("UTC")  # a saved zone is never overwritten
        expect(page.locator("#zone-browser")).to_be_visible()
        page.click("#zone-use")
        expect(page.locator("#timezone")).to_have_value(ZONE)
        expect(page.locator("#zone-browser")).to_be_hidden()
        context.close()
    assert problems == []


def test_the_preview_endpoint_wants_the_pages_token_and_only_answers_json(site: dict[str, Any]) -> None:
    url = site["url"]
    refused = httpx.post(f"{url}/preview", data={"mode": "keywords", "keywords": "model"})
    assert refused.status_code == 403 and refused.json() == {"error": "This page is too old: reload it."}
    page = httpx.get(f"{url}/subscribe")
    token = re.search(r'data-token="([^"]+)"', page.text)
    assert token
    answer = httpx.post(f"{url}/preview", data={"csrf": token.group(1), "mode": "keywords", "keywords": "(model"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["errors"]["keywords"].startswith("line 1: ") and answer.json()["papers"] == []
    script = httpx.get(f"{url}/static/readers.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "<script" not in page.text.replace('<script src="/static/readers.js" defer></script>', "")
    # pages without the script keep the policy in which nothing runs
    assert "script-src" not in httpx.get(f"{url}/health").headers["content-security-policy"]
