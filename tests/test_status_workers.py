"""`status --json` for the operator of several workers (issue 14): pending claims per worker with
each one's latest lease and whether it ran out, and the queue depth, on both stores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import run, write_config
from newsletter.ledger import Ledger
from newsletter.store import NewIssue, Store

AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SLOT = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)


def _issues(who: str, n: int, next_slot: bool = False) -> list[NewIssue]:
    slot = SLOT + timedelta(hours=1) if next_slot else SLOT
    return [NewIssue(f"{who}{i}@x.org@{slot:%Y%m%d%H}", f"{who}{i}@x.org", slot, AT, "pending", ("2611.00001",),
                     subject="s", message_id=f"<{who}{i}>", message=b"From: x\r\n\r\nbody\r\n",
                     expires_at=slot + timedelta(days=1)) for i in range(n)]


def test_status_json_shows_claims_per_worker_and_the_queue(tmp_path: Path, state: Path | str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    with Store(state) as store:
        def worker(name: str, lease: timedelta) -> Ledger:
            return Ledger(store, now=AT, pause_after=3, owner=name, clock=lambda: AT - timedelta(minutes=1),
                          lease=lease)
        worker("mail-1:10", timedelta(minutes=15)).record(_issues("a", 3))
        worker("mail-2:20", timedelta(seconds=30)).record(_issues("b", 2))  # gone: its lease ran out
        store.record_issues(_issues("c", 1, next_slot=True), None, None)  # unclaimed
    capsys.readouterr()
    assert run("--file", str(project), "--state", str(state), "status", "--json", "--at", AT.isoformat()) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["workers"] == {"mail-1:10": 3, "mail-2:20": 2}
    assert info["worker_leases"] == {
        "mail-1:10": {"claims": 3, "lease_until": "2026-11-27T09:14:00+00:00", "lease_expired": False},
        "mail-2:20": {"claims": 2, "lease_until": "2026-11-27T08:59:30+00:00", "lease_expired": True},
    }
    assert info["claims"] == {"mail-1:10": 3, "mail-2:20": 2, "": 1}
    assert info["queue"] == {"pending": 6, "due": 6, "claimed": 5, "lease_expired": 2,
                             "oldest_slot_utc": info["queue"]["oldest_slot_utc"]}
    assert info["queue"]["oldest_slot_utc"].startswith("2026-11-27T07:00")
