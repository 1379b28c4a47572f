"""End to end: `newsletter run` with a real SMTP server and a real HTTP feed; one-click unsubscribe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from conftest import DATA, Recorder, free_port, run, write_config

SECRET = "test-secret-not-for-production"


def _wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _unsubscribe_url(raw: bytes) -> str:
    msg = message_from_bytes(raw, policy=policy.default)
    m = re.search(r"<(http://[^>]+/unsubscribe/[^>]+)>", str(msg["List-Unsubscribe"]))
    assert m and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return m.group(1)


def test_run_delivers_then_one_click_unsubscribe_stops_the_next_issue(
        smtp_server: tuple[Recorder, int], httpserver: HTTPServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    feed = (DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes()
    httpserver.expect_request("/api/daily_papers").respond_with_data(feed, content_type="application/json")
    sources = f"  sources:\n    - name: hf\n      type: hf-daily\n      url: {httpserver.url_for('/api/daily_papers')}\n"
    subs = ("  - email: ada@example.org\n    keywords: [model]\n    schedule: '* * * * *'\n"
            "  - email: bob@example.org\n    keywords: [model]\n    schedule: '* * * * *'\n")
    project = write_config(tmp_path, port=smtp_port, sources=sources, subscribers=subs,
                           extra=f"  base_url: http://127.0.0.1:{web_port}\n")
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "run",
                             "--port", str(web_port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(recorder.messages) >= 2)
        first = {m[1][0]: m[2] for m in recorder.messages}
        assert set(first) == {"ada@example.org", "bob@example.org"}
        url = _unsubscribe_url(first["ada@example.org"])

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{web_port}/health").status_code == 200
            except httpx.HTTPError:
                return False
        _wait_for(up)
        page = httpx.get(url)  # a GET (a mail scanner) never unsubscribes
        assert page.status_code == 200 and 'method="post"' in page.text
        yaml_before = project.read_bytes()
        assert _state_of(project, "ada@example.org") == "active"
        answer = httpx.post(url, content=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        assert "set-cookie" not in answer.headers
        assert _state_of(project, "ada@example.org") == "unsubscribed"
        assert project.read_bytes() == yaml_before  # one store commit; the YAML is configuration
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping: finishing in-flight deliveries" in err
    # the next slot: new papers, Bob gets them, Ada gets nothing
    httpserver.clear()
    items = json.loads(feed)
    for item in items:
        item["paper"]["id"] = item["paper"]["id"].replace(".", ".9", 1)
        item["paper"]["title"] = "New " + item["paper"]["title"]
    httpserver.expect_request("/api/daily_papers").respond_with_json(items)
    before = len(recorder.messages)
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 120))
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    assert run("--file", str(project), "send", "--at", at) == 0
    new = [m[1][0] for m in recorder.messages[before:]]
    assert new == ["bob@example.org"]


def _state_of(project: Path, email: str) -> str:
    """What `newsletter status --json` says of a subscriber's state."""
    out = subprocess.run([sys.executable, "-m", "newsletter", "--file", str(project), "status", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return next(s["state"] for s in json.loads(out)["subscribers"] if s["email"] == email)


def test_a_slow_drip_source_delays_neither_the_endpoint_nor_shutdown(smtp_server: tuple[Recorder, int],
                                                                     tmp_path: Path) -> None:
    """Finding 3: the endpoint answers while a source drips one byte every 1.5 s, and SIGTERM ends
    the service (the fetch is cut at its deadline; nothing waits for it longer)."""
    from test_remote_sources import DripServer

    _, smtp_port = smtp_server
    web_port = free_port()
    drip = DripServer(b"<rss></rss>" * 1000, 1.5, head_first=True)
    try:
        sources = f"  sources:\n    - {{name: drip, type: feed, url: '{drip.url}', timeout: 8}}\n"
        project = write_config(tmp_path, port=smtp_port, sources=sources)
        env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
        proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "run",
                                 "--port", str(web_port)], env=env, stderr=subprocess.PIPE, text=True)
        try:
            def up() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{web_port}/health").status_code == 200
                except httpx.HTTPError:
                    return False
            _wait_for(up)  # while the drip is still going: it would take 1.5 s a byte for 11,000 bytes
            assert drip.sent < 11_000
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)  # a liveness bound, not a measurement
        assert proc.returncode == 0, err
        assert "stopping: finishing in-flight deliveries" in err
    finally:
        drip.close()
