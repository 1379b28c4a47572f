"""The preview workbench (`preview --serve`) in real headless Chromium, and its defences."""

from __future__ import annotations

import json

import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from browser import chromium, serving
from newsletter import tokens
from newsletter.rendering import default_templates
from newsletter.web import allowed_hosts, unsubscribe_app
from newsletter.workbench import Workbench, app

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
KEY = "this-runs-key-0123456789"
SECRET = "the-production-secret"


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The bundled example, with a template folder of its own and a base_url, served on a free port."""
    shutil.copytree(ROOT / "data", tmp_path / "data")
    theme = tmp_path / "theme"
    theme.mkdir()
    shutil.copy(default_templates() / "issue.mjml.j2", theme / "issue.mjml.j2")
    shutil.copytree(default_templates() / "catalogue", theme / "catalogue")
    example = yaml.safe_load((ROOT / "subscribers.example.yaml").read_text())
    example["newsletter"].update(templates="theme", base_url="https://digest.example.org")
    config = tmp_path / "subscribers.yaml"
    config.write_text(yaml.safe_dump(example, sort_keys=False, allow_unicode=True))
    bench = Workbench(config, tmp_path / ".newsletter" / "state.sqlite3", {"NEWSLETTER_SECRET": SECRET},
                      at=AT, fetch=True)
    with serving(app(bench, KEY)) as url:
        yield f"{url}/{KEY}/", theme
    assert not (tmp_path / ".newsletter" / "state.sqlite3").exists()  # nothing recorded


def frame_body(page):  # noqa: ANN001, ANN201
    # (waits below are functions, not strings: the page's CSP forbids eval, which a string would need)
    return page.frame_locator("#frame").locator("body")


def test_workbench_lists_switches_and_reloads(workbench: tuple[str, Path], tmp_path: Path) -> None:
    url, theme = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        items = page.locator("#subscribers li")
        items.first.wait_for()
        example = yaml.safe_load((ROOT / "subscribers.example.yaml").read_text())
        assert [items.nth(i).get_attribute("data-email") for i in range(items.count())] == [
            s["email"] for s in example["subscribers"]]
        page.wait_for_function("() => document.getElementById('subject').textContent.includes('Daily Papers Digest')")
        sidebar = page.locator("#subscribers").inner_text()
        assert "5 papers" in sidebar and "KB" in sidebar and "10 new papers" in sidebar  # entries, size, subject
        ada_subject = page.locator("#subject").inner_text()
        assert "5 new papers" in ada_subject
        assert "KB of 102 KB" in page.locator("#meter-label").inner_text()
        assert frame_body(page).locator("h1").inner_text() == "Daily Papers Digest"

        # switch subscriber
        page.locator("#subscribers li[data-email='grace@example.org'] button").click()
        page.wait_for_function("() => !document.getElementById('subject').textContent.includes('5 new papers')")
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
        page.wait_for_function("() => document.body.dataset.theme === 'dark'")
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
        catalogue = theme / "catalogue" / "en.json"
        words = json.loads(catalogue.read_text())
        assert words["why"] == "Why you got this:"
        words["why"] = "Picked for you:"
        catalogue.write_text(json.dumps(words))
        page.wait_for_function(f"() => document.body.dataset.version !== '{version}'", timeout=15000)
        frame_body(page).get_by_text("Picked for you:").first.wait_for(timeout=15000)
        assert frame_body(page).get_by_text("Why you got this:").count() == 0
        page.screenshot(path=str(tmp_path / "workbench.png"))


def test_email_at_375px_has_no_horizontal_scrolling(workbench: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        page.wait_for_function("() => document.getElementById('subject').textContent.includes('new papers')")
        frame_body(page).locator("h1").wait_for()
        frame = page.frame_locator("#frame")
        width = frame.locator("html").evaluate("h => h.scrollWidth")
        client = frame.locator("html").evaluate("h => h.clientWidth")
        assert client <= 375 and width <= client
        page.locator("#frame-wrap").screenshot(path=str(tmp_path / "phone.png"))
        assert (tmp_path / "phone.png").stat().st_size > 1000


def test_email_is_shown_in_a_sandboxed_frame_under_a_strict_policy(workbench: tuple[str, Path]) -> None:
    url, _ = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.goto(url)
        frame_body(page).locator("h1").wait_for()
        sandbox = page.locator("#frame").get_attribute("sandbox") or ""
        assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
        # the framed email cannot reach the workbench: its origin is opaque
        assert page.frame_locator("#frame").locator("html").evaluate("h => { try { return window.parent.document.title } catch (e) { return 'blocked' } }") == "blocked"  # noqa: E501
        assert problems == []
    page_answer = httpx.get(url)
    assert "'unsafe-inline'" not in page_answer.headers["content-security-policy"]
    assert page_answer.headers["x-frame-options"] == "DENY"
    email = httpx.get(url + "email/ada@example.org")
    assert email.headers["content-security-policy"].startswith("sandbox ")
    assert "script-src" not in email.headers["content-security-policy"]


def test_foreign_host_headers_are_refused(workbench: tuple[str, Path]) -> None:
    """Finding 1: a page that DNS-rebinds its own name to 127.0.0.1 gets nothing."""
    url, _ = workbench
    for path in ("", "api/state", "api/issue/ada@example.org", "api/version", "email/ada@example.org"):
        answer = httpx.get(url + path, headers={"Host": "rebind.attacker.example:8000"})
        assert answer.status_code == 400 and "example.org" not in answer.text, path
    assert httpx.get(url + "api/state", headers={"Host": "localhost"}).status_code == 200


def test_every_route_needs_this_runs_key(workbench: tuple[str, Path]) -> None:
    url, _ = workbench
    root = url.removesuffix(f"{KEY}/")
    for path in ("", "api/state", "api/version", "api/issue/ada@example.org", "email/ada@example.org",
                 "workbench.js"):
        for prefix in ("", "wrong-key/", KEY[:-1] + "/", KEY.upper() + "/"):
            answer = httpx.get(root + prefix + path)
            assert answer.status_code == 404 and "ada@" not in answer.text, prefix + path
        assert httpx.get(url + path).status_code == 200, path
    assert "ada@example.org" in httpx.get(url + "api/state").text


def test_preview_links_do_not_work_against_the_service(workbench: tuple[str, Path]) -> None:
    url, _ = workbench
    headers = httpx.get(url + "api/issue/ada@example.org").json()["headers"]
    token = re.search(r"<https://digest\.example\.org/unsubscribe/([^>]+)>", headers)
    assert token, headers
    assert tokens.verify(token.group(1), SECRET) is None
    recorded: list[str] = []
    service = unsubscribe_app(recorded.append, [SECRET], title="Daily Papers Digest",
                              hosts=allowed_hosts(None, "127.0.0.1"))
    with serving(service) as service_url:
        answer = httpx.post(f"{service_url}/unsubscribe/{token.group(1)}")
        assert answer.status_code == 400 and "This link is not valid" in answer.text
        real = httpx.post(f"{service_url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}")
        assert real.status_code == 200  # the same service does take a real link
    assert recorded == ["ada@example.org"]


def test_issue_lookup_ignores_the_case_of_the_address(workbench: tuple[str, Path]) -> None:
    url, _ = workbench
    exact = httpx.get(url + "api/issue/ada@example.org")
    shouted = httpx.get(url + "api/issue/ADA@Example.ORG")
    assert exact.status_code == shouted.status_code == 200
    assert shouted.json() == exact.json() and shouted.json()["email"] == "ada@example.org"
    assert httpx.get(url + "email/Ada@Example.org").status_code == 200
    assert httpx.get(url + "api/issue/nobody@example.org").status_code == 404


def test_why_not_this_paper(workbench: tuple[str, Path]) -> None:
    """The search box answers what `newsletter explain` answers, this preview's issues counted as built."""
    url, _ = workbench
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.locator("#subscribers li").first.wait_for()
        issue = httpx.get(url + "api/issue/ada@example.org").json()
        assert issue["entries"] > 0
        first_paper = re.search(r"https://huggingface\.co/papers/([0-9.]+)", issue["text"])
        assert first_paper, issue["text"][:500]
        page.fill("#why-paper", first_paper.group(1))
        page.click("#why button")
        page.locator("#why-out li").first.wait_for()
        rows = {li.get_attribute("data-email"): li.inner_text()
                for li in page.locator("#why-out li").all()}
        assert rows["ada@example.org"].startswith("ada@example.org: in the issue this preview builds")
        example = yaml.safe_load((ROOT / "subscribers.example.yaml").read_text())
        assert set(rows) == {s["email"] for s in example["subscribers"]}
        assert first_paper.group(1) in page.locator("#why-paper-name").inner_text()
        page.fill("#why-paper", "no such words in any title at all")
        page.click("#why button")
        page.wait_for_function("() => document.getElementById('why-paper-name').textContent.includes('no stored paper')")
        assert page.locator("#why-out li").count() == 0
        assert errors == []
