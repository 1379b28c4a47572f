"""What the readers' tests share: a project (subscribers.yaml from a dict, the listing ingested at a
fixed time), the reader app of that project served by uvicorn on a known loopback port, the mails
an aiosmtpd server received, and a dump of the whole state to compare before and after."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from starlette.types import ASGIApp

from conftest import LISTING, Recorder, free_port
from newsletter import ingest
from newsletter.deployment import Deployment
from newsletter.store_readers import ReaderStore
from newsletter.web import Current, allowed_hosts, readers_app, start

SECRET = "readers-test-secret-0123456789"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
ENV = {"NEWSLETTER_SECRET": SECRET}


def write_project(folder: Path, smtp_port: int, web_port: int, *, subscribers: list[dict[str, Any]] | None = None,
                  **settings: Any) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "listing.txt").write_bytes(LISTING.read_bytes())
    doc = {
        "newsletter": {
            "title": "Test Digest", "sender": "Test Digest <digest@example.org>",
            "base_url": f"http://127.0.0.1:{web_port}",
            "sources": [{"name": "listing", "type": "hf-listing", "path": "data/listing.txt"}],
            "schedule": "0 7 * * *", "timezone": "UTC",
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "timeout": 5},
            **settings,
        },
        "subscribers": subscribers if subscribers is not None else [
            {"email": "ada@example.org", "name": "Ada", "keywords": ['"language model"'], "max_entries": 5}],
    }
    path = folder / "subscribers.yaml"
    path.write_text("# kept by hand\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def open_project(path: Path, now: datetime = NOW) -> Deployment:
    dep = Deployment.open(path, None, ENV)
    with ReaderStore(dep.state) as store:
        ingest.ingest_sources(store, dep.config, now)
    return dep


@contextmanager
def serving_on(app: ASGIApp, port: int) -> Iterator[str]:
    """uvicorn (newsletter.web.start) on 127.0.0.1:port in a thread with its own loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["running"] = loop.run_until_complete(start(app, "127.0.0.1", port))
        except BaseException as exc:  # noqa: BLE001  # handed to the test thread
            box["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_until_complete(box["running"].task)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(setattr, box["running"].server, "should_exit", True)
        thread.join()
        loop.close()


def app_for(dep: Deployment, port: int, clock: Callable[[], datetime] = lambda: NOW, **kw: Any) -> ASGIApp:
    current = Current(dep, ENV)
    return readers_app(current, ENV, hosts=allowed_hosts(dep.config.settings.base_url, "127.0.0.1"),
                       clock=clock, unsubscribe=lambda a: current().unsubscribe(a, clock()), **kw)


def wait_for_mail(recorder: Recorder, count: int, seconds: float = 20.0) -> list[EmailMessage]:
    """The first `count` mails, waiting for a background delivery (a guard, not a time limit under test)."""
    deadline = time.monotonic() + seconds
    while len(recorder.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [message_from_bytes(m[2], policy=policy.default) for m in recorder.messages]  # type: ignore[misc]


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link(msg: EmailMessage, kind: str) -> str:
    found = re.search(rf"https?://\S+/{kind}/[A-Za-z0-9_.-]+", body(msg))
    assert found, body(msg)
    return found.group(0)


def dump(state: Path) -> list[str]:
    """Every row of every table: equal dumps, equal state."""
    db = sqlite3.connect(state)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def plain(html: str) -> str:
    """A page without its per-response parts (style nonce, form token)."""
    return re.sub(r'(nonce(=\"|-)|name="csrf" value=")[A-Za-z0-9_.-]+', "", html)


def ports() -> tuple[int, int]:
    return free_port(), free_port()


def dsn(to: str, original: EmailMessage | bytes, *, status: str = "5.1.1", action: str = "failed",
        reporter: str = "mx.example.net", message_id: str = "<dsn-1@mx.example.net>",
        date: str = "Fri, 27 Nov 2026 10:00:00 +0000") -> bytes:
    """A DSN as a receiving MTA writes it, returning the headers of `original`."""
    headers = original if isinstance(original, bytes) else bytes(original)
    head = headers.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    boundary = "dsn-boundary-1"
    return (f"From: Mail Delivery System <MAILER-DAEMON@{reporter}>\r\nTo: digest@example.org\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
            f'boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {reporter}\r\n\r\n"
            f"Final-Recipient: rfc822; {to}\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n").encode() + head + \
        f"\r\n\r\n--{boundary}--\r\n".encode()
