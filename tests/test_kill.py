"""Crash safety: SIGKILL a `send` at random moments and restart it; two `send`s at once.

Every subscriber must end with exactly one accepted message, except messages that were in flight at
a kill (the server accepted them but the process died before recording it): those are counted and
carry the same Message-ID.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller

from conftest import Recorder, edit_config, free_port, write_config

from newsletter.ledger import GROUP

AT = "2026-11-27T09:00:00+00:00"


class Slow(Recorder):
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


def _send(project: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "newsletter", "--quiet", "--file", str(project), "send",
                             "--at", AT], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _project(tmp_path: Path, port: int, n: int) -> Path:
    subs = "".join(f"  - email: user{i:03d}@example.org\n    keywords: ['model']\n    max_entries: 2\n"
                   for i in range(n))
    project = write_config(tmp_path, port=port, subscribers=subs)
    edit_config(project, lambda d: d["newsletter"]["smtp"].update(concurrency=2))
    return project


def _accepted(recorder: Recorder) -> tuple[Counter[str], dict[str, set[str]]]:
    per_rcpt: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for _, rcpts, raw in recorder.messages:
        msg = message_from_bytes(raw, policy=policy.default)
        per_rcpt[rcpts[0]] += 1
        ids.setdefault(rcpts[0], set()).add(msg["Message-ID"])
    return per_rcpt, ids


def test_sigkill_at_random_moments_then_restart_delivers_each_issue_once(tmp_path: Path) -> None:
    recorder, port = Slow(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    n = 200
    try:
        project = _project(tmp_path, port, n)
        rng = random.Random(20261127)
        kills, runs = 0, 0
        while True:
            runs += 1
            assert runs < 40, "send never finished"
            proc = _send(project)
            if kills < 6:
                time.sleep(rng.uniform(0.8, 3.0))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
            break
    finally:
        controller.stop()
    per_rcpt, ids = _accepted(recorder)
    assert set(per_rcpt) == {f"user{i:03d}@example.org" for i in range(n)}
    duplicates = sum(c - 1 for c in per_rcpt.values())
    # the README's bound: per kill, the messages in flight (`concurrency`) plus one commit group
    assert kills >= 1 and duplicates <= kills * (2 + GROUP)
    assert all(len(v) == 1 for v in ids.values())  # a re-send is the same message
    db = sqlite3.connect(project.parent / ".newsletter" / "state.sqlite3")
    assert db.execute("SELECT status, count(*) FROM issues GROUP BY status").fetchall() == [("sent", n)]
    db.close()
    print(f"kills={kills} runs={runs} duplicates={duplicates}")


def test_three_sends_started_together_deliver_each_issue_once(tmp_path: Path) -> None:
    recorder, port = Slow(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    n = 40
    try:
        project = _project(tmp_path, port, n)
        procs = [_send(project), _send(project), _send(project)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()
    finally:
        controller.stop()
    per_rcpt, _ = _accepted(recorder)
    assert per_rcpt == Counter({f"user{i:03d}@example.org": 1 for i in range(n)})


class VerySlow(Recorder):
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        await asyncio.sleep(0.3)
        return await super().handle_DATA(server, session, envelope)


def test_sigterm_finishes_in_flight_transactions_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    recorder, port = VerySlow(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    n = 30
    try:
        project = _project(tmp_path, port, n)
        edit_config(project, lambda d: d["newsletter"]["smtp"].update(concurrency=1))
        proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "run", "--port", "0"],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(recorder.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopping: finishing in-flight deliveries" in err
        accepted = len(recorder.messages)
        db = sqlite3.connect(project.parent / ".newsletter" / "state.sqlite3")
        counts = dict(db.execute("SELECT status, count(*) FROM issues GROUP BY status").fetchall())
        db.close()
        assert 3 <= accepted < n
        assert counts == {"sent": accepted, "pending": n - accepted}  # nothing accepted is left pending
        # the next run delivers the rest, and nothing twice
        done = subprocess.run([sys.executable, "-m", "newsletter", "--quiet", "--file", str(project), "send"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        controller.stop()
    per_rcpt, _ = _accepted(recorder)
    assert per_rcpt == Counter({f"user{i:03d}@example.org": 1 for i in range(n)})
