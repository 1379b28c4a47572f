"""The `run` service driven by a controlled clock: its cron groups fire as APScheduler would fire them
(the trigger's own fire times), and we step the clock to each one instead of sleeping."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import edit_config, run, write_config
from newsletter.scheduler import Service

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=timezone.utc)  # a Friday
ZONES = {"london@example.org": "Europe/London", "newyork@example.org": "America/New_York",
         "tokyo@example.org": "Asia/Tokyo"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _project(tmp_path: Path, port: int) -> Path:
    subs = "".join(f"  - email: {e}\n    keywords: ['model OR learning']\n    schedule: '0 8 * * *'\n"
                   f"    timezone: {z}\n    max_entries: 2\n" for e, z in ZONES.items())
    return write_config(tmp_path, port=port, subscribers=subs)


def _fire_times(service: Service, start: datetime, end: datetime) -> list[tuple[datetime, tuple[str, str]]]:
    """Every firing of every group job in (start, end], as the scheduler would run them."""
    out = []
    for key, trigger in service.triggers().items():
        t = trigger.get_next_fire_time(None, start + timedelta(seconds=1))
        while t is not None and t <= end:
            out.append((t.astimezone(timezone.utc), key))
            t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    return sorted(out)


def _add_papers(service: Service, tmp_path: Path, tag: str) -> None:
    """New papers arrive (a file source ingested at the current clock time)."""
    from newsletter.sources import entryfile
    from newsletter.store import Store

    data = "".join(f'{{"title": "Learning model number {tag}-{i}", "abstract": "A model."}}\n' for i in range(3))
    with Store(service.state_path) as store:
        store.upsert_entries(entryfile.parse(data.encode(), source="new"), service.clock())


def _slots(state: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(state)
    rows = db.execute("SELECT subscriber, slot, status FROM issues ORDER BY slot").fetchall()
    db.close()
    out: dict[str, list[str]] = {}
    for email, slot, status in rows:
        out.setdefault(email, []).append(f"{slot[:16]} {status}")
    return out


def test_three_time_zones_get_their_issues_at_local_8am(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    project = _project(tmp_path, port)
    state = tmp_path / "state.sqlite3"
    clock = Clock(T0)
    service = Service(project, state, {}, port=None, clock=clock)
    assert len(service.triggers()) == 3  # one job per (schedule, zone) group
    service.fetch()
    service.send_now()  # start-up pass: every first issue is due at once
    assert len(recorder.messages) == 3
    for when, group in _fire_times(service, T0, T0 + timedelta(days=1)):
        clock.now = when - timedelta(minutes=30)
        _add_papers(service, tmp_path, f"{when:%H}")
        clock.now = when
        service.send_now(group)
    slots = _slots(state)
    # 08:00 local on 27 Nov: London is UTC+0, New York UTC-5, Tokyo UTC+9
    assert slots["london@example.org"][-1] == "2026-11-27T08:00 sent"
    assert slots["newyork@example.org"][-1] == "2026-11-27T13:00 sent"
    assert slots["tokyo@example.org"][-1] == "2026-11-27T23:00 sent"
    assert len(recorder.messages) == 6
    per_rcpt = sorted(r for _, rcpts, _ in recorder.messages for r in rcpts)
    assert per_rcpt == sorted(list(ZONES) * 2)


def test_restart_after_missed_slots_sends_one_issue_not_one_per_firing(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    project = _project(tmp_path, port)
    state = tmp_path / "state.sqlite3"
    clock = Clock(T0)
    first = Service(project, state, {}, port=None, clock=clock)
    first.fetch()
    first.send_now()
    assert len(recorder.messages) == 3
    # down for three days; papers keep arriving; restart at 09:00 UTC on 30 Nov
    clock.now = T0 + timedelta(days=2)
    _add_papers(first, tmp_path, "down")
    clock.now = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    restarted = Service(project, state, {}, port=None, clock=clock)
    restarted.send_now()
    restarted.send_now()  # and again: nothing more
    slots = _slots(state)
    assert slots["london@example.org"] == ["2026-11-26T08:00 sent", "2026-11-30T08:00 sent"]
    # New York's 08:00 (13:00 UTC) has not come yet; its latest slot (29 Nov) is past the window
    assert slots["newyork@example.org"] == ["2026-11-26T13:00 sent"]
    assert len(recorder.messages) == 4


def test_apscheduler_jobs_coalesce_with_a_catch_up_grace(tmp_path: Path) -> None:
    import asyncio

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    project = _project(tmp_path, 2525)
    service = Service(project, tmp_path / "s.sqlite3", {}, port=None, catch_up=timedelta(hours=3))

    async def inspect() -> list[tuple[str, bool, int | None]]:
        service.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        service._schedule_groups()
        service._schedule_sources()
        service.scheduler.start(paused=True)
        jobs = [(j.id, j.coalesce, j.misfire_grace_time) for j in service.scheduler.get_jobs()]
        service.scheduler.shutdown(wait=False)
        return jobs

    jobs = asyncio.run(inspect())
    group_jobs = [j for j in jobs if j[0].startswith("group:")]
    assert len(group_jobs) == 3 and all(c and g == 3 * 3600 for _, c, g in group_jobs)
    assert [j[0] for j in jobs if j[0].startswith("source:")] == ["source:listing"]


def test_reload_picks_up_edits_and_keeps_the_last_valid_config(tmp_path: Path) -> None:
    import os

    project = _project(tmp_path, 2525)
    service = Service(project, tmp_path / "s.sqlite3", {}, port=None)
    assert run("--file", str(project), "subscribers", "add", "new@example.org", "--keyword", "x") == 0
    os.utime(project, ns=(1, 1))  # make sure the stamp changes even within one clock tick
    assert service.reload() is True
    assert service.config.subscriber("new@example.org") is not None
    project.write_text(project.read_text() + "  - email: broken\n")
    assert service.reload() is False
    assert service.config.subscriber("new@example.org") is not None


def test_a_burst_of_10000_subscribers_due_in_the_same_minute_is_delivered(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    n = 10_000
    subs = "".join(f"  - email: u{i:05d}@example.org\n    keywords: [model]\n    max_entries: 1\n" for i in range(n))
    project = write_config(tmp_path, port=port, subscribers=subs)
    edit_config(project, lambda d: d["newsletter"]["smtp"].update(timeout=30, concurrency=4))
    clock = Clock(datetime(2026, 11, 27, 7, 0, 30, tzinfo=timezone.utc))
    service = Service(project, tmp_path / "s.sqlite3", {}, port=None, clock=clock)
    assert len(service.triggers()) == 1  # 10,000 subscribers, one job
    service.fetch()
    report = service.send_now(("0 7 * * *", "UTC"))
    assert len(report.sent) == n and not report.failed and not report.retrying
    recipients = {r for _, rcpts, _ in recorder.messages for r in rcpts}
    assert len(recorder.messages) == n and len(recipients) == n
