"""The acceptance test of issue 12, in headless Chromium against the real service (its endpoint and
its delivery), a real SMTP server (aiosmtpd) and a real SQLite store: subscribe -> confirmation
mail -> open the link -> confirm -> the first digest is delivered; the preference centre changes
the keywords and the next digest follows them; "Less like this" -> a proposed change with its
replayed effect -> applied -> the profile changed; unsubscribe from the page. The manage link and
"Less like this" are the ones the digests carry.

With NEWSLETTER_SCREENSHOTS=DIR set, the pages are also saved there at phone and desktop widths
(docs/screenshots/readers-*.png were made so).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from browser import chromium
from conftest import Recorder, free_port
from newsletter.links import Links
from newsletter.models import Entry
from newsletter.roster import Roster
from newsletter.scheduler import Service
from newsletter.store_readers import ReaderStore
from readers_kit import ENV, NOW, SECRET, body, link, open_project, wait_for_mail, write_project

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
READER = "lin@example.org"


@contextmanager
def running(service: Service) -> Iterator[None]:
    """The service's reader endpoint in a loop of its own, as `run` starts it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(service._start_endpoint(), loop).result()
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(service._stop_endpoint(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def off_loop(fn: Any) -> Any:
    """Call fn on another thread: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("NEWSLETTER_SCREENSHOTS")
    if not folder:
        return
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        page.screenshot(path=str(Path(folder) / f"readers-{name}-{size}.png"), full_page=True)
    page.set_viewport_size(SIZES["phone"])


def from_digest(msg: Any, kind: str, tail: str = "") -> str:
    """The link of this kind the digest carries (its plain-text part: the same links as the HTML)."""
    found = re.findall(rf"https?://\S+/{kind}/\S+", body(msg))
    chosen = [u for u in found if u.endswith(tail)] if tail else found
    assert len(set(chosen)) == 1, (kind, tail, found)
    return chosen[0]


def to_reader(recorder: Recorder) -> list[Any]:
    return [m for m in wait_for_mail(recorder, len(recorder.messages)) if m["To"] == READER]


def test_a_reader_signs_up_shapes_their_digest_rates_a_paper_and_leaves(
        tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    path = write_project(tmp_path, smtp_port, web_port)
    open_project(path)  # the listing, ingested at NOW
    clock = {"now": NOW}
    service = Service(path, None, ENV, port=web_port, clock=lambda: clock["now"])
    links = Links(f"http://127.0.0.1:{web_port}", SECRET)

    def standing() -> Any:
        with ReaderStore(service.dep.state) as store:
            return Roster(service.config, store).member(READER)

    with running(service), chromium() as browser:
        page = browser.new_page(viewport=SIZES["phone"])
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)

        # subscribe -> confirmation mail -> open the link -> confirm -> the first digest
        page.goto(f"{links.base_url}/subscribe")
        page.fill("#email", READER)
        page.fill("#keywords", '"language model"')
        page.fill("#timezone", "Europe/Berlin")
        page.locator("#live-preview h2").get_by_text("The last 7 days would have brought").wait_for()  # live
        shot(page, "subscribe")
        page.get_by_role("button", name="Subscribe", exact=True).click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        (confirmation,) = wait_for_mail(recorder, 1)
        assert confirmation["To"] == READER and standing() is None
        page.goto(link(confirmation, "confirm"))
        shot(page, "confirm")
        page.get_by_role("button", name="Confirm my subscription").click()
        page.get_by_role("heading", name="You are subscribed").wait_for()
        wait_for_mail(recorder, 3)  # the confirmation, then the first digests of the reader (and of Ada)
        (first,) = [m for m in to_reader(recorder) if m["Message-ID"] != confirmation["Message-ID"]]
        assert "Confirm" not in first["Subject"]
        assert "RegMix" in body(first)
        assert standing().subscriber.home == "store" and standing().subscriber.timezone == "Europe/Berlin"

        # the preference centre, opened from that digest, changes the keywords; the next digest follows them
        page.goto(from_digest(first, "manage"))
        page.get_by_role("heading", name="Your Test Digest").wait_for()
        page.fill("#keywords", "causal*")
        page.get_by_role("button", name="Save").click()
        page.locator("#notice").wait_for()
        assert standing().subscriber.keywords == ("causal*",)
        clock["now"] = NOW + timedelta(days=1)
        fresh = [Entry(id="2611.00001", title="Causal Discovery from Streaming Interventions",
                       abstract="We study causal structure learning under interventions."),
                 Entry(id="2611.00002", title="A Language Model for Proteins", abstract="A language model."),
                 Entry(id="2611.00003", title="Causal Effects of Medical Imaging Triage",
                       abstract="Causal estimates for medical imaging workflows.")]
        with ReaderStore(service.dep.state) as store:
            store.upsert_entries(fresh, clock["now"] - timedelta(hours=2))
        before = len(recorder.messages)
        off_loop(service.send_now)
        (second,) = [m for m in to_reader(recorder)[-1:]]
        assert len(recorder.messages) > before and second["Message-ID"] != first["Message-ID"]
        assert "Causal Discovery from Streaming" in body(second) and "Language Model for Proteins" not in body(second)

        page.goto(from_digest(second, "view"))  # "View in browser": the issue that was sent
        page.get_by_text("Causal Discovery from Streaming Interventions").first.wait_for()
        shot(page, "view")

        # "Less like this" from that digest -> a proposed change with its replayed effect -> applied ->
        # the profile changed
        page.goto(from_digest(second, "rate", "less/2611.00003"))
        shot(page, "feedback")
        page.get_by_role("button", name="Record: less like this").click()
        page.get_by_role("link", name="See the suggested change").click()
        proposal = page.locator(".proposal").first
        effect = proposal.locator(".effect").inner_text()
        assert "including this one" in effect and effect.startswith("\u2212"), effect
        query = proposal.locator("input[name=query]").get_attribute("value")
        shot(page, "manage")
        proposal.get_by_role("button", name="Apply this change").click()
        page.locator("#notice").wait_for()
        assert "Applied" in page.locator("#notice").inner_text()
        assert standing().subscriber.exclude == (query,)

        # unsubscribe from the page; nothing more arrives
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        assert standing().standing.state == "unsubscribed"
        clock["now"] = NOW + timedelta(days=2)
        with ReaderStore(service.dep.state) as store:
            store.upsert_entries([replace(fresh[0], id="2611.00004", title="Causal Forests Revisited")],
                                 clock["now"] - timedelta(hours=1))
        count = len(to_reader(recorder))
        off_loop(service.send_now)
        assert len(to_reader(recorder)) == count
        assert page.evaluate("document.documentElement.scrollWidth") <= SIZES["phone"]["width"]
        assert problems == []  # no CSP violation, nothing blocked
