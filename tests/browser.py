"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, and a real uvicorn server on
loopback for the web pages it visits."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright
from starlette.types import ASGIApp

from newsletter.web import Running

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serving(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app with newsletter.web.start (uvicorn) in a thread of its own; yields its base URL."""
    from newsletter.web import start

    loop = asyncio.new_event_loop()
    started: queue.Queue[Running | BaseException] = queue.Queue()

    def main() -> None:
        try:
            running = loop.run_until_complete(start(app, host, 0))
        except BaseException as exc:  # noqa: B036  # handed to the test thread, which raises it
            started.put(exc)
            return
        started.put(running)
        loop.run_until_complete(running.task)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    running = started.get()
    if isinstance(running, BaseException):
        raise running
    try:
        yield f"http://{host}:{running.port}"
    finally:
        loop.call_soon_threadsafe(setattr, running.server, "should_exit", True)
        thread.join()
        loop.close()
