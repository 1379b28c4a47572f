"""Pausing until a date: from the preference centre and `subscribers pause --until`; nothing is sent
during the pause, the subscriber is due again from that day, and the first issue after the gap is
one catch-up digest ranked over the whole gap (real store, real SMTP server, the service's send job)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from conftest import Recorder, free_port, run
from newsletter import editing
from newsletter.errors import ConfigError
from newsletter.models import Entry, Links
from newsletter.scheduler import Service
from newsletter.store_readers import ReaderStore
from readers_kit import ENV, NOW, SECRET, app_for, csrf, open_project, serving_on, write_project

ADA = "ada@example.org"


def _paper(n: int, strong: bool) -> Entry:
    title = f"A language model for task {n}" if strong else f"Notes on task {n}"
    abstract = "We study a language model." if not strong else "We train a language model on a new corpus."
    return Entry(id=f"2612.{n:05d}", title=title, abstract=abstract, authors=("B. Author",),
                 links=Links(page=f"https://example.org/p/{n}"), sources=("listing",))


def _issue_papers(state: Path, email: str) -> list[list[str]]:
    with ReaderStore(state) as store:
        return [[e.id for e in store.issue_entries(i.id)] for i in reversed(store.sent_issues(email))]


def test_a_pause_until_a_date_sends_nothing_then_one_catch_up_issue_over_the_whole_gap(
        tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    dep = open_project(write_project(tmp_path, smtp_port, free_port()))
    clock = {"now": NOW}
    service = Service(dep.config.path, None, ENV, port=None, clock=lambda: clock["now"])
    assert service.send_now().sent == [ADA]  # the first issue, before the pause
    first = _issue_papers(dep.state, ADA)
    assert len(first) == 1

    done = editing.pause(dep, ENV, ADA, NOW + timedelta(hours=1), on=True, until=date(2026, 12, 3))
    assert done.what == f"paused {ADA} until 2026-12-03"
    # Papers arrive every day of the pause: one strong match (title) and one weak (abstract) a day.
    strong: list[str] = []
    weak: list[str] = []
    with ReaderStore(dep.state) as store:
        for day in range(6):  # 28 Nov .. 3 Dec, each at 06:00, before the 07:00 slot
            seen = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc) + timedelta(days=day)
            papers = [_paper(2 * day + 1, False)] + ([_paper(2 * day, True)] if day < 5 else [])
            store.upsert_entries(papers, seen)
            weak.append(papers[0].id)
            strong.extend(p.id for p in papers[1:])
    for day in range(5):  # 28 Nov .. 2 Dec: paused, nothing goes out
        clock["now"] = datetime(2026, 11, 28, 7, 5, tzinfo=timezone.utc) + timedelta(days=day)
        report = service.send_now()
        assert report.sent == [] and any(n.subscriber.email == ADA and "until 2026-12-03" in n.reason
                                         for n in report.skipped)
    assert len(recorder.messages) == 1
    clock["now"] = datetime(2026, 12, 3, 7, 5, tzinfo=timezone.utc)
    assert service.send_now().sent == [ADA]  # due again on the day the pause ends
    issues = _issue_papers(dep.state, ADA)
    assert len(issues) == 2 and len(recorder.messages) == 2
    # One issue for the whole gap, ranked over all of it: the five strong matches of five days
    # (max_entries 5) beat the six weak ones, the first day of the pause included.
    assert sorted(issues[1]) == sorted(strong) and len(strong) == 5
    with ReaderStore(dep.state) as store:
        assert store.paused_until(ADA) is None
        assert store.states([ADA])[ADA].paused_reason is None
    # and the day after, the ordinary window again: only what arrived since
    with ReaderStore(dep.state) as store:
        store.upsert_entries([_paper(90, True)], datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc))
    clock["now"] = datetime(2026, 12, 4, 7, 5, tzinfo=timezone.utc)
    assert service.send_now().sent == [ADA]
    assert _issue_papers(dep.state, ADA)[2] == ["2612.00090"]


def test_pause_until_a_day_that_has_begun_is_refused(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    dep = open_project(write_project(tmp_path, smtp_server[1], free_port()))
    with pytest.raises(ConfigError) as err:
        editing.pause(dep, ENV, ADA, NOW, on=True, until=date(2026, 11, 27))
    assert str(err.value) == ("pause until 2026-11-27: that day has begun already in UTC; give a later date")


def test_the_cli_pauses_until_a_date(tmp_path: Path, smtp_server: tuple[Recorder, int],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    dep = open_project(write_project(tmp_path, smtp_server[1], free_port(),
                                     subscribers=[{"email": ADA, "keywords": ["diffusion"], "timezone": "Asia/Tokyo"}]))
    config = str(dep.config.path)
    assert run("--file", config, "subscribers", "pause", ADA, "--until", "2099-01-05") == 0
    assert f"paused {ADA} until 2099-01-05" in capsys.readouterr().out
    with ReaderStore(dep.state) as store:  # midnight in the subscriber's zone
        assert store.paused_until(ADA) == datetime(2099, 1, 4, 15, 0, tzinfo=timezone.utc)
        assert "until 2099-01-05" in (store.states([ADA])[ADA].paused_reason or "")
    assert run("--file", config, "subscribers", "pause", ADA, "--until", "5 January") == 2
    assert "'5 January' is not a date: give it as YYYY-MM-DD" in capsys.readouterr().err
    assert run("--file", config, "subscribers", "resume", ADA) == 0
    with ReaderStore(dep.state) as store:
        assert store.paused_until(ADA) is None and store.states([ADA])[ADA].paused_reason is None


def test_the_preference_centre_pauses_until_a_date(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    from newsletter.links import Links as SignedLinks

    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_server[1], web_port))
    manage = SignedLinks(dep.config.settings.base_url or "", SECRET).manage(ADA, 0)
    with serving_on(app_for(dep, web_port), web_port):
        page = httpx.get(manage)
        assert 'type="date" id="until" name="until"' in page.text
        past = httpx.post(manage, data={"csrf": csrf(page.text), "action": "pause", "until": "2026-11-20"})
        assert past.status_code == 400
        assert "Not paused: pause until 2026-11-20: that day has begun already in UTC" in past.text
        bad = httpx.post(manage, data={"csrf": csrf(page.text), "action": "pause", "until": "soon"})
        assert bad.status_code == 400 and "Not paused: give the date as YYYY-MM-DD." in bad.text
        with ReaderStore(dep.state) as store:
            assert store.paused_until(ADA) is None
        done = httpx.post(manage, data={"csrf": csrf(page.text), "action": "pause", "until": "2026-12-24"})
        assert done.status_code == 200
        assert "Paused until 2026-12-24: then one digest catches up on what you missed." in done.text
        assert "paused by the reader until 2026-12-24" in done.text  # the standing the page shows
        assert "Resume my digest" in done.text
        with ReaderStore(dep.state) as store:
            assert store.paused_until(ADA) == datetime(2026, 12, 24, tzinfo=timezone.utc)
        resumed = httpx.post(manage, data={"csrf": csrf(done.text), "action": "resume"})
        assert "Resumed." in resumed.text
        with ReaderStore(dep.state) as store:
            assert store.paused_until(ADA) is None


def test_send_from_cron_ends_a_pause_whose_day_has_come(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    """`newsletter send` run by cron, with no `run` service, lifts the pause on its day too."""
    recorder, smtp_port = smtp_server
    dep = open_project(write_project(tmp_path, smtp_port, free_port()))
    editing.pause(dep, ENV, ADA, NOW, on=True, until=date(2026, 11, 29))
    for day in (28, 29):  # a paper a day, before the 07:00 slot
        with ReaderStore(dep.state) as store:
            store.upsert_entries([_paper(day, True)], datetime(2026, 11, day, 6, 0, tzinfo=timezone.utc))
    paused = dep.send(datetime(2026, 11, 28, 7, 5, tzinfo=timezone.utc), fetch=False).report
    assert paused.sent == [] and any("until 2026-11-29" in n.reason for n in paused.skipped)
    assert dep.send(datetime(2026, 11, 29, 7, 5, tzinfo=timezone.utc), fetch=False).report.sent == [ADA]
    assert len(recorder.messages) == 1
    with ReaderStore(dep.state) as store:
        assert store.paused_until(ADA) is None
