"""Rotating NEWSLETTER_SECRET (issue 12, item 6): links signed with the previous secret keep working
for a configurable time (NEWSLETTER_SECRET_PREVIOUS_UNTIL), then get the one refusal every bad link
gets. Against the real reader app on loopback, with its clock set before and after."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from conftest import Recorder, free_port
from newsletter import credentials
from newsletter.deployment import Deployment
from newsletter.errors import ConfigError
from newsletter.links import Links
from newsletter.tokens import sign
from newsletter.web import Current, allowed_hosts, readers_app
from readers_kit import NOW, open_project, serving_on, write_project

NEW, OLD = "this-months-secret-0123456789", "last-months-secret-0123456789"
ENV = {"NEWSLETTER_SECRET": NEW, "NEWSLETTER_SECRET_PREVIOUS": OLD, "NEWSLETTER_SECRET_PREVIOUS_UNTIL": "2026-12-31"}


def test_old_links_work_until_the_day_set_then_are_refused(tmp_path: Path,
                                                          smtp_server: tuple[Recorder, int]) -> None:
    _, smtp_port = smtp_server
    port = free_port()
    open_project(write_project(tmp_path, smtp_port, port))  # the listing ingested into the state
    dep = Deployment.open(tmp_path / "subscribers.yaml", None, ENV)
    old, new = Links(f"http://127.0.0.1:{port}", OLD), Links(f"http://127.0.0.1:{port}", NEW)
    for when, old_ok in ((NOW, True), (datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc), True),
                         (datetime(2027, 1, 1, 0, 0, tzinfo=timezone.utc), False)):
        current = Current(dep, ENV)
        app = readers_app(current, ENV, hosts=allowed_hosts(dep.config.settings.base_url, "127.0.0.1"),
                          clock=lambda when=when: when, unsubscribe=lambda a: None)
        with serving_on(app, port):
            for links, ok in ((old, old_ok), (new, True)):
                page = httpx.get(links.manage("ada@example.org", 0))
                assert (page.status_code == 200) == ok and ("ada@example.org" in page.text) == ok, (when, links)
                button = httpx.get(f"http://127.0.0.1:{port}/unsubscribe/{sign('ada@example.org', links.secret)}")
                assert (button.status_code == 200) == ok, (when, "unsubscribe")
            if not old_ok:
                assert "This link is not valid" in httpx.get(old.manage("ada@example.org", 0)).text


def test_the_until_setting_is_checked_at_the_edge() -> None:
    assert credentials.read(ENV).previous_until == datetime(2027, 1, 1, tzinfo=timezone.utc)
    at = credentials.read({**ENV, "NEWSLETTER_SECRET_PREVIOUS_UNTIL": "2026-12-01T12:00:00+01:00"}).previous_until
    assert at == datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)
    secrets = credentials.read(ENV)
    assert secrets.verifying_at(at - timedelta(days=1)) == (NEW, OLD)
    assert secrets.verifying_at(datetime(2027, 1, 1, tzinfo=timezone.utc)) == (NEW,)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_PREVIOUS_UNTIL: 'soon' is not a date"):
        credentials.read({**ENV, "NEWSLETTER_SECRET_PREVIOUS_UNTIL": "soon"})


@pytest.mark.parametrize(("name", "value"), [("NEWSLETTER_SECRET", "x"), ("NEWSLETTER_SECRET", "fifteen-chars!!"),
                                             ("NEWSLETTER_SECRET_PREVIOUS", "short")])
def test_a_secret_too_short_to_resist_guessing_is_refused(tmp_path: Path, name: str, value: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15, finding 21: one signed link lets a short secret be guessed offline."""
    from conftest import run, write_config

    project = write_config(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET", NEW)
    monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert run("--file", str(project), "validate") == 2
    assert f"{name} is too short ({len(value)} characters): use at least {credentials.MIN_SECRET}" in \
        capsys.readouterr().err
    monkeypatch.setenv(name, value + "x" * (credentials.MIN_SECRET - len(value)))  # long enough: accepted
    assert run("--file", str(project), "validate") == 0
