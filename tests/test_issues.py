"""Slots, windows and ids: the pure issue logic, and the first issue never floods the backlog."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import run, write_config
from newsletter.issues import issue_id
from newsletter.schedule import Schedule

UTC = timezone.utc


@pytest.mark.parametrize(("cron", "zone", "at", "slot"), [
    ("0 7 * * *", "UTC", "2026-11-27T07:00:00", "2026-11-27T07:00:00"),   # at the firing itself
    ("0 7 * * *", "UTC", "2026-11-27T06:59:59", "2026-11-26T07:00:00"),
    ("30 8 * * mon-fri", "Europe/London", "2026-11-30T08:00:00", "2026-11-27T08:30:00"),  # Monday early: Friday
    ("30 8 * * 1-5", "Europe/London", "2026-11-30T09:00:00", "2026-11-30T08:30:00"),  # crontab 1 = Monday
    ("0 9 * * 0", "UTC", "2026-11-30T00:00:00", "2026-11-29T09:00:00"),   # crontab 0 = Sunday
    ("0 9 * * 7", "UTC", "2026-11-30T00:00:00", "2026-11-29T09:00:00"),   # and 7 too
    ("0 8 * * *", "America/New_York", "2026-07-01T12:30:00", "2026-07-01T12:00:00"),  # EDT: UTC-4
    ("0 8 * * *", "America/New_York", "2026-12-01T13:30:00", "2026-12-01T13:00:00"),  # EST: UTC-5
    ("0 6 1 * *", "UTC", "2026-11-27T00:00:00", "2026-11-01T06:00:00"),   # monthly
])
def test_latest_firing(cron: str, zone: str, at: str, slot: str) -> None:
    got = Schedule(cron, zone).latest_at_or_before(datetime.fromisoformat(at).replace(tzinfo=UTC))
    assert got == datetime.fromisoformat(slot).replace(tzinfo=UTC)


def test_period_and_next() -> None:
    s = Schedule("30 8 * * mon-fri", "Europe/London")
    monday = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
    assert s.period_before(monday) == timedelta(days=3)
    assert s.next_after(monday) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def test_issue_ids_are_deterministic_and_distinct() -> None:
    slot = datetime(2026, 11, 27, 7, tzinfo=UTC)
    assert issue_id("ada@example.org", slot) == issue_id("ada@example.org", slot)
    assert issue_id("ada@example.org", slot) != issue_id("ada@example.org", slot + timedelta(days=1))
    assert issue_id("ada@example.org", slot) != issue_id("bob@example.org", slot)


def test_a_first_issue_never_floods_the_backlog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    # papers arrive on the 20th; a subscriber's first issue on the 27th holds only the last day's
    assert run("--file", str(project), "ingest") == 0
    state = project.parent / ".newsletter" / "state.sqlite3"
    import sqlite3

    db = sqlite3.connect(state)
    db.execute("UPDATE entries SET first_seen='2026-11-20T07:00:00+00:00'")
    db.commit()
    db.close()
    capsys.readouterr()
    assert run("--file", str(project), "send", "--no-fetch", "--dry-run", "--at", "2026-11-27T09:00:00+00:00") == 0
    out = capsys.readouterr().out
    assert "ada@example.org: nothing to send (no new entries)" in out
    # while on the 20th itself the same papers are new
    assert run("--file", str(project), "send", "--no-fetch", "--dry-run", "--at", "2026-11-20T09:00:00+00:00") == 0
    assert "ada@example.org: would send 3 entries" in capsys.readouterr().out


def test_an_issue_holds_what_arrived_since_the_previous_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from newsletter.sources import entryfile
    from newsletter.store import Store

    project = write_config(tmp_path, subscribers="  - email: ada@example.org\n    keywords: [widget]\n")
    state = project.parent / ".newsletter" / "state.sqlite3"

    def arrive(title: str, at: datetime) -> None:
        with Store(state) as store:
            store.upsert_entries(entryfile.parse(f'[{{"title": "{title}"}}]'.encode(), source="f"), at)

    box = tmp_path / "box"
    arrive("Widget one", datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert run("--file", str(project), "send", "--no-fetch", "--outbox", str(box), "--at", "2026-11-27T07:00:00Z") == 0
    arrive("Widget two", datetime(2026, 11, 27, 8, tzinfo=UTC))   # after the 07:00 issue was built
    arrive("Widget one", datetime(2026, 11, 27, 9, tzinfo=UTC))   # seen again: never new again
    assert run("--file", str(project), "send", "--no-fetch", "--outbox", str(box), "--at", "2026-11-28T07:00:00Z") == 0
    from email import message_from_bytes, policy

    texts = sorted(message_from_bytes(p.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
                   for p in (box / "new").iterdir())
    assert len(texts) == 2
    import re

    assert sum(bool(re.search(r"Widget\W* one", t)) for t in texts) == 1  # highlighted: *Widget* one
    assert sum(bool(re.search(r"Widget\W* two", t)) for t in texts) == 1
