"""SMTP faults against real aiosmtpd servers on 127.0.0.1: retries, refusals, STARTTLS, stalls."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller

from conftest import Recorder, free_port, run, write_config

AT = "2026-11-27T09:00:00+00:00"
LATER = "2026-11-27T09:30:00+00:00"


def ledger(project: Path) -> dict[str, tuple[str, int, str | None]]:
    db = sqlite3.connect(project.parent / ".newsletter" / "state.sqlite3")
    rows = db.execute("SELECT subscriber, status, attempts, last_error FROM issues").fetchall()
    db.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def set_smtp(project: Path, **settings: object) -> None:
    """Change newsletter.smtp settings of a project written by write_config, as data."""
    data = yaml.safe_load(project.read_text())
    data["newsletter"]["smtp"].update(settings)
    project.write_text(yaml.safe_dump(data, allow_unicode=True))


def retitled(listing: str, day: int) -> str:
    """The listing with one paper renamed, so a new day has something new to send."""
    changed = listing.replace("Revisiting the Superficial", f"Revisiting (day {day}) the Superficial")
    assert changed != listing
    return changed


def test_451_is_retried_within_the_run_and_delivered_once(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    recorder.rcpt_replies["ada@example.org"] = ["451 4.3.0 try again later", "250 OK"]
    project = write_config(tmp_path, port=port)
    assert run("--file", str(project), "send", "--at", AT) == 0
    assert sorted(r for _, rcpts, _ in recorder.messages for r in rcpts) == ["ada@example.org", "grace@example.org"]
    status, attempts, _ = ledger(project)["ada@example.org"]
    assert (status, attempts) == ("sent", 2)


def test_451_on_every_try_stays_pending_and_a_later_run_delivers(smtp_server, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    recorder.rcpt_replies["ada@example.org"] = ["451 4.3.0 greylisted"]
    project = write_config(tmp_path, port=port, extra="")
    set_smtp(project, retries=0)
    assert run("--file", str(project), "send", "--at", AT) == 3
    err = capsys.readouterr().err
    assert "ada@example.org: will retry: 451 4.3.0 greylisted" in err
    assert ledger(project)["ada@example.org"][0] == "pending"
    recorder.rcpt_replies.clear()
    assert run("--file", str(project), "send", "--at", LATER) == 0
    ada = [m for m in recorder.messages if m[1] == ["ada@example.org"]]
    assert len(ada) == 1
    assert ledger(project)["ada@example.org"][0] == "sent"
    assert run("--file", str(project), "send", "--at", LATER) == 0
    assert len(recorder.messages) == 2


def test_550_fails_alone_and_others_are_delivered(smtp_server, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    recorder.rcpt_replies["ada@example.org"] = ["550 5.1.1 no such user"]
    project = write_config(tmp_path, port=port)
    assert run("--file", str(project), "send", "--at", AT) == 3
    assert [m[1] for m in recorder.messages] == [["grace@example.org"]]
    assert "ada@example.org: failed: 550 5.1.1 no such user" in capsys.readouterr().err
    status, attempts, error = ledger(project)["ada@example.org"]
    assert (status, attempts, error) == ("failed", 1, "550 5.1.1 no such user")
    # a failed issue is final: a later run does not send it again
    recorder.rcpt_replies.clear()
    assert run("--file", str(project), "send", "--at", LATER) == 0
    assert [m[1] for m in recorder.messages] == [["grace@example.org"]]


def test_starttls_required_but_not_offered_sends_nothing(smtp_server, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server  # aiosmtpd without a TLS context offers no STARTTLS
    project = write_config(tmp_path, port=port)
    set_smtp(project, tls="starttls", retries=0)
    assert run("--file", str(project), "send", "--at", AT) == 3
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} does not offer STARTTLS; refusing to send in plaintext" in err
    assert recorder.messages == []
    assert {v[0] for v in ledger(project).values()} == {"pending", "empty"}


def test_password_with_plaintext_is_refused(smtp_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "digest")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2")
    assert run("--file", str(project), "send", "--at", AT) == 2
    err = capsys.readouterr().err
    assert "refusing to log in over plaintext (tls: none)" in err and "hunter2" not in err
    assert recorder.messages == []


class Stalling(Recorder):
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        await asyncio.sleep(5)
        return "250 OK"


def test_stalled_server_times_out_and_stays_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    controller = Controller(Stalling(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        project = write_config(tmp_path, port=port)
        set_smtp(project, timeout=1, retries=0)
        assert run("--file", str(project), "send", "--at", AT) == 3
    finally:
        controller.stop()
    rows = ledger(project)
    assert rows["ada@example.org"][0] == "pending"
    assert "timed out" in (rows["ada@example.org"][2] or "").lower()


def test_connection_refused_trips_the_breaker_and_leaves_issues_pending(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    subs = "".join(f"  - email: user{i}@example.org\n    keywords: ['model']\n" for i in range(8))
    project = write_config(tmp_path, port=free_port(), subscribers=subs)
    set_smtp(project, retries=0, concurrency=1)
    assert run("--file", str(project), "send", "--at", AT) == 3
    assert "consecutive connection failures; the rest stays pending" in capsys.readouterr().err
    rows = ledger(project)
    assert len(rows) == 8 and {r[0] for r in rows.values()} == {"pending"}
    assert sum(r[1] for r in rows.values()) == 5  # five attempts, then the breaker stopped the run


def test_repeated_permanent_failures_pause_the_subscriber(smtp_server, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    recorder, port = smtp_server
    recorder.rcpt_replies["ada@example.org"] = ["550 5.1.1 no such user"]
    subs = "  - email: ada@example.org\n    keywords: [model]\n    max_entries: 1\n"
    project = write_config(tmp_path, port=port, subscribers=subs)
    set_smtp(project, pause_after=2)
    listing = project.parent / "data" / "listing.txt"
    text = listing.read_text()
    for day in (27, 28):
        # new papers each day, so there is something to send
        listing.write_text(retitled(text, day))
        assert run("--file", str(project), "send", "--at", f"2026-11-{day}T09:00:00+00:00") == 3
    err = capsys.readouterr().err
    assert "ada@example.org: failed: subscriber paused after repeated permanent failures" in err
    listing.write_text(retitled(text, 29))
    assert run("--file", str(project), "send", "--at", "2026-11-29T09:00:00+00:00") == 0
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    (ada,) = info["subscribers"]
    assert ada["state"] == "paused"
    assert ada["why"] == "paused after 2 permanent delivery failures"
    assert recorder.messages == []


def test_an_issue_not_delivered_before_its_next_slot_expires(smtp_server, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    recorder.rcpt_replies["ada@example.org"] = ["451 4.3.0 try later"]
    subs = "  - email: ada@example.org\n    keywords: [model]\n"
    project = write_config(tmp_path, port=port, subscribers=subs)
    set_smtp(project, retries=0)
    assert run("--file", str(project), "send", "--at", AT) == 3
    recorder.rcpt_replies.clear()
    # the next slot (28 Nov 07:00) has passed: the old issue is expired, not sent late
    assert run("--file", str(project), "send", "--at", "2026-11-28T09:00:00+00:00") == 3
    assert "ada@example.org: expired: not delivered before the next slot" in capsys.readouterr().err
    assert recorder.messages == []
    assert ledger(project)["ada@example.org"][0] in ("expired", "empty")


@pytest.mark.parametrize(("stage", "reply", "status", "exit_code"), [
    ("rcpt", "452 4.2.2 mailbox full", "pending", 3),
    ("rcpt", "421 4.7.0 closing connection", "pending", 3),
    ("rcpt", "554 5.7.1 rejected", "failed", 3),
    ("data", "451 4.3.0 local error", "pending", 3),
    ("data", "554 5.6.0 message refused", "failed", 3),
])
def test_replies_per_stage(smtp_server, tmp_path: Path, stage: str, reply: str, status: str, exit_code: int,
                           capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    if stage == "rcpt":
        recorder.rcpt_replies["ada@example.org"] = [reply]
    else:
        recorder.data_reply = reply
    subs = "  - email: ada@example.org\n    keywords: [model]\n"
    project = write_config(tmp_path, port=port, subscribers=subs)
    set_smtp(project, retries=0)
    assert run("--file", str(project), "send", "--at", AT) == exit_code
    row = ledger(project)["ada@example.org"]
    assert row[0] == status and reply.split()[0] in (row[2] or "")
    assert recorder.messages == []


class DropAfterData(Recorder):
    """Reads the message, then drops the line without an answer, the first time."""

    dropped = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if not self.dropped:
            self.dropped += 1
            server.transport.close()
            return None
        return await super().handle_DATA(server, session, envelope)


def test_a_connection_dropped_after_data_is_retried_with_the_same_message_id(tmp_path: Path) -> None:
    import sqlite3
    from email import message_from_bytes, policy

    handler, port = DropAfterData(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        subs = "  - email: ada@example.org\n    keywords: [model]\n"
        project = write_config(tmp_path, port=port, subscribers=subs)
        assert run("--file", str(project), "send", "--at", AT) == 0  # retried within the run
    finally:
        controller.stop()
    assert handler.dropped == 1 and len(handler.messages) == 1
    db = sqlite3.connect(project.parent / ".newsletter" / "state.sqlite3")
    status, attempts, dup, message_id = db.execute(
        "SELECT status, attempts, possible_duplicate, message_id FROM issues WHERE subscriber='ada@example.org'"
    ).fetchone()
    db.close()
    assert (status, attempts, dup) == ("sent", 2, 1)  # counted as a possible duplicate
    assert message_from_bytes(handler.messages[0][2], policy=policy.default)["Message-ID"] == message_id


class Holding(Recorder):
    """Takes a message's data and never answers it (a transaction left in the middle)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.arrived.set()
        await asyncio.sleep(3600)
        return "250 OK"


def test_ctrl_c_in_the_middle_of_a_transaction_ends_the_send_at_once(tmp_path: Path) -> None:
    """Ctrl-C while the server has not answered a message's data: `send` ends at once (with 130),
    nothing is marked sent; the connection, in an unknown state, is closed, not reused or sent QUIT."""
    handler, port = Holding(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    proc = None
    try:
        project = write_config(tmp_path, port=port)
        set_smtp(project, timeout=600, retries=0, concurrency=1)
        proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "send", "--at", AT],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert handler.arrived.wait(120), "no message reached the server"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        controller.stop()
    assert proc.returncode == 130 and "interrupted" in err
    assert "sent" not in {status for status, _, _ in ledger(project).values()}
