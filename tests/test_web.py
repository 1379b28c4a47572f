"""The unsubscribe endpoint on its real stack (Starlette on uvicorn, on loopback): RFC 8058 one-click,
the confirmation page in headless Chromium (also under a proxy's path prefix), and its defences."""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.types import Receive, Scope, Send

from browser import chromium, serving
from conftest import run, write_config
from newsletter import pipeline, tokens
from newsletter.tokens import Purpose
from newsletter.web import allowed_hosts, unsubscribe_app

SECRET = "test-secret-not-for-production"
OLD_SECRET = "last-months-secret"
BASE_URL = "https://digest.example.org/papers"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
STRICT = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[str]]]:
    recorded: list[str] = []
    app = unsubscribe_app(recorded.append, [SECRET, OLD_SECRET], title="Test Digest",
                          hosts=allowed_hosts(BASE_URL, "127.0.0.1"), clock=lambda: NOW)
    with serving(app) as url:
        yield url, recorded


def _same(a: httpx.Response, b: httpx.Response) -> bool:
    """Equal answers, but for the per-response style nonce."""
    def plain(r: httpx.Response) -> str:
        return re.sub(r"nonce(=\"|-)[A-Za-z0-9_-]+", "nonce", r.text)
    return a.status_code == b.status_code and plain(a) == plain(b)


def test_one_click_post_unsubscribes_without_cookies(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    answer = httpx.post(f"{url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}",
                        content=b"List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert recorded == ["ada@example.org"]
    assert "set-cookie" not in answer.headers
    for name, value in STRICT.items():
        assert answer.headers[name] == value
    policy = answer.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy


def test_a_link_signed_with_the_previous_secret_still_works(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    assert httpx.post(f"{url}/unsubscribe/{tokens.sign('ada@example.org', OLD_SECRET)}").status_code == 200
    assert recorded == ["ada@example.org"]


def test_a_get_never_unsubscribes(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    token = tokens.sign("ada@example.org", SECRET)
    page = httpx.get(f"{url}/unsubscribe/{token}")
    assert page.status_code == 200 and f'<form method="post" action="{token}">' in page.text
    assert httpx.head(f"{url}/unsubscribe/{token}").status_code == 200
    assert recorded == []


def test_the_answer_does_not_depend_on_the_address_being_on_the_list(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    known = httpx.post(f"{url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}")
    unknown = httpx.post(f"{url}/unsubscribe/{tokens.sign('stranger@example.org', SECRET)}")
    assert _same(known, unknown) and known.status_code == 200
    assert recorded == ["ada@example.org", "stranger@example.org"]  # the app asks nobody who is subscribed


def _bad_tokens() -> dict[str, str]:
    good = tokens.sign("ada@example.org", SECRET)
    return {
        "forged": tokens.sign("ada@example.org", "guessed-secret"),
        "altered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "truncated": good[: len(good) // 2],
        "padded": good + "==",
        "junk inserted": good[:4] + "!~*(" + good[4:],
        "wrong purpose": tokens.make(Purpose.MANAGE, "ada@example.org", SECRET),
        "expired": tokens.make(Purpose.UNSUBSCRIBE, "ada@example.org", SECRET, expires=NOW - timedelta(days=1)),
        "dropped secret": tokens.sign("ada@example.org", "a-secret-from-long-ago"),
    }


def test_every_bad_token_gets_one_identical_refusal(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    answers = {kind: httpx.post(f"{url}/unsubscribe/{token}") for kind, token in _bad_tokens().items()}
    reference = answers["forged"]
    assert reference.status_code == 400 and "This link is not valid" in reference.text
    for kind, answer in answers.items():
        assert _same(answer, reference), kind
        page = httpx.get(f"{url}/unsubscribe/{_bad_tokens()[kind]}")
        assert _same(page, reference), kind
    assert recorded == []


def test_foreign_host_headers_are_refused(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    token = tokens.sign("ada@example.org", SECRET)
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", "evil.example@127.0.0.1", ""):
        answer = httpx.post(f"{url}/unsubscribe/{token}", headers={"Host": host})
        assert answer.status_code == 400, host
        assert answer.text == "This server does not answer to that host name.\n"
        assert answer.headers["x-frame-options"] == "DENY"
    assert recorded == []
    for host in ("digest.example.org", "DIGEST.example.org:443", "localhost:8025", "[::1]:8025"):
        assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host


def test_cross_site_form_posts_are_refused(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    target = f"{url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        answer = httpx.post(target, headers=headers)
        assert answer.status_code == 403 and "only from this site's own pages" in answer.text
    assert recorded == []
    assert httpx.post(target, headers={"Origin": "https://digest.example.org"}).status_code == 200
    assert httpx.post(target, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_request_bodies_are_bounded(endpoint: tuple[str, list[str]]) -> None:
    url, recorded = endpoint
    target = f"{url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}"
    assert httpx.post(target, content=b"x" * 70_000).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(70):
            yield b"x" * 1000
    assert httpx.post(target, content=chunks()).status_code == 413  # no Content-Length: counted as read
    assert recorded == []


def test_nothing_redirects_and_other_methods_are_refused(endpoint: tuple[str, list[str]]) -> None:
    url, _ = endpoint
    token = tokens.sign("ada@example.org", SECRET)
    for path in ("//evil.example/", f"/unsubscribe/{token}/", "/unsubscribe", "/%2F%2Fevil.example"):
        answer = httpx.get(url + path)
        assert answer.status_code == 404 and "location" not in answer.headers, path
    answer = httpx.put(f"{url}/unsubscribe/{token}")
    assert answer.status_code == 405 and "Use the link in the email" in answer.text


def test_a_failure_to_record_is_answered_and_logged_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Finding 5: an unusable state file. The client gets 503 at once; the log says so at once."""
    project = write_config(tmp_path)
    state = tmp_path / "state.sqlite3"
    state.write_bytes(b"this is not a database" * 100)

    def record(address: str) -> None:
        pipeline.unsubscribe(project, state, address, NOW, {})

    app = unsubscribe_app(record, [SECRET], title="Test Digest", hosts=allowed_hosts(None, "127.0.0.1"))
    with caplog.at_level(logging.ERROR), serving(app) as url:
        answer = httpx.post(f"{url}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "600"
        assert "Please try again later" in answer.text and answer.headers["x-frame-options"] == "DENY"
        logged = [r.getMessage() for r in caplog.records if r.name == "newsletter.web"]
        assert any(m.startswith("the unsubscribe of ada@example.org was not recorded:") for m in logged), logged
    assert "unsubscribed" not in project.read_text()


class _Prefix:
    """What a reverse proxy does for base_url https://host/papers: strips the prefix before passing on."""

    def __init__(self, app, prefix: str) -> None:  # noqa: ANN001
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(self.prefix + "/"):
            scope = {**scope, "path": path[len(self.prefix):], "raw_path": path[len(self.prefix):].encode()}
        await self.app(scope, receive, send)


@pytest.mark.parametrize("prefix", ["", "/papers"])
def test_the_confirmation_page_in_chromium(prefix: str, tmp_path: Path) -> None:
    recorded: list[str] = []
    app = unsubscribe_app(recorded.append, [SECRET], title="Test <Digest>",
                          hosts=allowed_hosts(BASE_URL, "127.0.0.1"))
    token = tokens.sign("ada@example.org", SECRET)
    with serving(_Prefix(app, prefix)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 700})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.goto(f"{url}{prefix}/unsubscribe/{token}")
        assert page.locator("h1").inner_text() == "Unsubscribe from Test <Digest>"
        assert recorded == []
        button = page.get_by_role("button", name="Unsubscribe")
        colour = button.evaluate("b => getComputedStyle(b).backgroundColor")
        assert colour == "rgb(29, 78, 216)"  # the nonce'd stylesheet applied under the strict CSP
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(tmp_path / "unsubscribe.png"))
        button.click()
        page.get_by_text("You are unsubscribed").wait_for()
        assert page.url == f"{url}{prefix}/unsubscribe/{token}"  # posted back to itself, prefix kept
        assert recorded == ["ada@example.org"]
        assert problems == []  # no CSP violation, nothing blocked


def test_newsletter_serve_end_to_end(tmp_path: Path) -> None:
    """The real command: the known and the unknown address get one answer, every bad token one refusal."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import free_port

    project = write_config(tmp_path, extra=f"  base_url: {BASE_URL}\n")
    port = free_port()
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_SECRET_PREVIOUS": OLD_SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"serving unsubscribe on http://127.0.0.1:{port}/unsubscribe/<token>\n"
        base = f"http://127.0.0.1:{port}/unsubscribe/"
        refusals = [httpx.post(base + token) for token in _bad_tokens().values()]
        assert all(_same(r, refusals[0]) for r in refusals) and refusals[0].status_code == 400
        state = tmp_path / ".newsletter" / "state.sqlite3"
        yaml_before = project.read_bytes()

        def unsubscribed() -> set[str]:
            from newsletter.store import Store

            with Store.snapshot(state) as store:
                return store.unsubscribed()
        assert unsubscribed() == set()
        known = httpx.post(base + tokens.sign("ada@example.org", OLD_SECRET))
        unknown = httpx.post(base + tokens.sign("stranger@example.org", SECRET))
        assert _same(known, unknown) and known.status_code == 200
        assert unsubscribed() == {"ada@example.org"}  # one store commit; the stranger is recorded nowhere
        assert project.read_bytes() == yaml_before
        assert httpx.get(base + "x", headers={"Host": "attacker.example"}).status_code == 400
        assert stat.S_IMODE(state.stat().st_mode) == 0o600  # it holds addresses: its owner's only
        # finding 4: while an edit with a YAML 1.1 number (`010`) is in place, a valid click still counts
        data = yaml.safe_load(yaml_before)
        data["newsletter"]["max_entries"] = 10
        text = yaml.safe_dump(data, sort_keys=False)
        assert "  max_entries: 10\n" in text
        project.write_text(text.replace("  max_entries: 10\n", "  max_entries: 010\n"))
        assert run("--file", str(project), "validate") == 2  # the file is refused ...
        clicked = httpx.post(base + tokens.sign("grace@example.org", SECRET))
        assert clicked.status_code == 200 and "You are unsubscribed" in clicked.text
        assert unsubscribed() == {"ada@example.org", "grace@example.org"}  # ... the unsubscribe is not
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_a_port_in_use_is_a_clear_error() -> None:
    import asyncio
    import socket

    from newsletter.errors import ConfigError
    from newsletter.web import start

    app = unsubscribe_app([].append, [SECRET], title="T", hosts=allowed_hosts(None, "127.0.0.1"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as exc:
            asyncio.run(start(app, "127.0.0.1", port))
    assert str(exc.value) == (f"cannot listen on 127.0.0.1:{port}: Address already in use "
                              "(choose another --host or --port)")
