"""`newsletter bounces PATH`: DSNs (RFC 3464) from a Maildir or an mbox, matched to the issues that
were really sent (aiosmtpd), suppress addresses; the box is only read and other mail is left alone."""

from __future__ import annotations

import hashlib
import mailbox
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from conftest import Recorder, free_port, run, write_config
from newsletter import bounces
from newsletter.deployment import Deployment
from newsletter.models import Entry, Links
from newsletter.roster import Roster
from newsletter.store_readers import ReaderStore
from readers_kit import ENV, NOW, dsn, open_project, write_project

PEOPLE = [{"email": "ada@example.org", "keywords": ['"language model"']},
          {"email": "grace@example.org", "keywords": ['"language model"']}]


def _project(tmp_path: Path, port: int) -> Deployment:
    dep = open_project(write_project(tmp_path, port, free_port(), subscribers=PEOPLE))
    report = dep.send(NOW, fetch=False).report
    assert sorted(report.sent) and not report.failed
    return dep


def _sent_to(recorder: Recorder, who: str) -> bytes:
    return next(m[2] for m in recorder.messages if m[1] == [who])


def _standing(dep: Deployment, who: str) -> str:
    with ReaderStore(dep.state) as store:
        found = Roster(dep.config, store).member(who)
    assert found is not None
    return found.standing.state


def _unrelated() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "friend@example.net", "digest@example.org", "Lunch?"
    msg.set_content("Are you free on Friday?")
    return bytes(msg)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_hard_bounce_suppresses_at_once_and_no_digest_follows(tmp_path: Path, smtp_server: tuple[Recorder, int],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    dep = _project(tmp_path, port)
    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    box.add(dsn("ada@example.org", _sent_to(recorder, "ada@example.org")))
    box.add(_unrelated())
    box.add(dsn("stranger@example.net", _unrelated(), message_id="<dsn-2@mx.example.net>"))
    box.close()
    before = _tree(tmp_path / "bounces")
    assert run("--file", str(dep.config.path), "bounces", str(tmp_path / "bounces")) == 0
    out = capsys.readouterr().out
    assert "3 messages: 1 new bounce reports (1 hard, 0 soft), 0 read before, 2 not about our mail" in out
    assert "suppressed: ada@example.org" in out
    assert _tree(tmp_path / "bounces") == before  # nothing moved, nothing deleted
    assert _standing(dep, "ada@example.org") == "bounced" and _standing(dep, "grace@example.org") == "active"
    recorder.messages.clear()
    with ReaderStore(dep.state) as store:  # new papers for the next day, which both would match
        store.upsert_entries([Entry(id=f"2612.0000{i}", title=f"A language model for task {i}",
                                    links=Links(page=f"https://example.org/{i}"), sources=("listing",))
                              for i in range(3)], NOW + timedelta(hours=12))
    report = dep.send(NOW + timedelta(days=1), fetch=False).report
    assert "grace@example.org" in report.sent and "ada@example.org" not in report.sent
    assert [m[1] for m in recorder.messages] == [["grace@example.org"]]
    assert run("--file", str(dep.config.path), "bounces", str(tmp_path / "bounces")) == 0
    assert "0 new bounce reports (0 hard, 0 soft), 1 read before" in capsys.readouterr().out


def test_soft_bounces_suppress_after_five_in_thirty_days(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    dep = _project(tmp_path, port)
    sent = _sent_to(recorder, "grace@example.org")
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(str(path))
    for n in range(4):
        box.add(dsn("grace@example.org", sent, status="4.2.2", action="delayed", message_id=f"<soft-{n}@mx>"))
    box.flush()
    with ReaderStore(dep.state) as store:
        first = bounces.process(store, dep.config, path, NOW)
    assert len(first.soft) == 4 and first.suppressed == [] and _standing(dep, "grace@example.org") == "active"
    box.add(dsn("grace@example.org", sent, status="4.2.2", action="failed", message_id="<soft-4@mx>"))
    box.close()
    with ReaderStore(dep.state) as store:
        second = bounces.process(store, dep.config, path, NOW)
    assert second.seen == 4 and second.suppressed == ["grace@example.org"]
    assert _standing(dep, "grace@example.org") == "bounced"


def test_old_soft_bounces_do_not_count(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    dep = _project(tmp_path, port)
    sent = _sent_to(recorder, "grace@example.org")
    path = tmp_path / "old.mbox"
    box = mailbox.mbox(str(path))
    for n in range(5):
        box.add(dsn("grace@example.org", sent, status="4.4.7", action="delayed", message_id=f"<s{n}@mx>",
                    date="Sat, 01 Aug 2026 10:00:00 +0000" if n < 3 else "Fri, 27 Nov 2026 08:00:00 +0000"))
    box.close()
    with ReaderStore(dep.state) as store:
        summary = bounces.process(store, dep.config, path, NOW)
    assert len(summary.soft) == 5 and summary.suppressed == []


def test_a_dsn_is_matched_by_message_id_even_when_the_recipient_was_rewritten(
        tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    dep = _project(tmp_path, port)
    path = tmp_path / "fwd.mbox"
    box = mailbox.mbox(str(path))
    box.add(dsn("ada.lovelace@forward.example", _sent_to(recorder, "ada@example.org")))
    box.close()
    with ReaderStore(dep.state) as store:
        summary = bounces.process(store, dep.config, path, NOW)
    assert summary.suppressed == ["ada@example.org"]


def test_a_path_that_is_no_mailbox_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = open_project(write_project(tmp_path, 2525, free_port()))
    (tmp_path / "folder").mkdir()
    assert run("--file", str(dep.config.path), "bounces", str(tmp_path / "folder")) == 2
    assert "folder: not a Maildir (no cur/ or new/ folder); pass a Maildir or an mbox file" in capsys.readouterr().err


def test_run_watches_the_bounce_maildir_and_sends_nothing_more_to_a_hard_bounce(
        tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import datetime, timezone

    from newsletter.models import Entry, Links

    recorder, smtp_port = smtp_server
    every_minute = [{**p, "schedule": "* * * * *"} for p in PEOPLE]
    path = write_project(tmp_path, smtp_port, free_port(), subscribers=every_minute, bounces={"maildir": "bounces"})
    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    dep = Deployment.open(path, None, ENV)

    def wait_for(what: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 150  # a guard for a stuck service, not a limit under test
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(path), "run", "--port", "0"],
                            env={**os.environ, **ENV}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the first digests", lambda: len(recorder.messages) >= 2)
        box.add(dsn("ada@example.org", _sent_to(recorder, "ada@example.org")))  # lands in new/
        box.add(_unrelated())
        wait_for("the bounce to be read", lambda: _standing(dep, "ada@example.org") == "bounced")
        assert _standing(dep, "grace@example.org") == "active"
        with ReaderStore(dep.state) as store:  # new papers for the next slot (a minute away at most)
            store.upsert_entries([Entry(id=f"2612.0000{i}", title=f"A language model for task {i}",
                                        links=Links(page=f"https://example.org/{i}"), sources=("listing",))
                                  for i in range(3)], datetime.now(timezone.utc))
        wait_for("grace's next digest", lambda: [m[1] for m in recorder.messages].count(["grace@example.org"]) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "ada@example.org: suppressed: the address bounced" in err
    assert [m[1] for m in recorder.messages].count(["ada@example.org"]) == 1
    with ReaderStore(dep.state) as store:  # never built with papers again: a suppressed address is not due
        ada = [i.status for i in store.issues() if i.subscriber == "ada@example.org"]
    # (a slot that fell before the bounce was read may have built her an empty issue: nothing new then)
    assert [s for s in ada if s != "empty"] == ["sent"]
    assert len(box) == 2  # the box is only read


def test_a_box_that_is_not_there_is_named_and_no_state_is_made(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    state = tmp_path / "elsewhere" / "state.sqlite3"
    assert run("--file", str(project), "--state", str(state), "bounces", str(tmp_path / "list")) == 2
    assert f"{tmp_path / 'list'}: no such Maildir or mbox file" in capsys.readouterr().err
    assert not state.parent.exists()  # checked before the state is opened
    (tmp_path / "plain").mkdir()
    assert run("--file", str(project), "--state", str(state), "bounces", str(tmp_path / "plain")) == 2
    assert "not a Maildir (no cur/ or new/ folder)" in capsys.readouterr().err and not state.parent.exists()
