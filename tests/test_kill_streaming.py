"""The streaming pipeline under SIGKILL: 10,000 store-held subscribers, `send` killed at random
moments (while building, committing or delivering), then run to the end. Nobody is lost, and the
duplicates stay within the README's bound: per kill, the messages in flight plus one commit group."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import yaml
from aiosmtpd.controller import Controller

from conftest import Recorder, free_port, run, write_config
from newsletter.ledger import GROUP

AT = "2026-11-27T09:00:00+00:00"
N = 10_000
CONCURRENCY = 4


def test_sigkill_during_a_10k_send_loses_nobody(tmp_path: Path) -> None:
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        project = write_config(tmp_path, port=port)
        config = yaml.safe_load(project.read_text())
        config["subscribers"] = []  # they all live in the store
        config["newsletter"]["max_entries"] = 2
        config["newsletter"]["smtp"].update(timeout=30, concurrency=CONCURRENCY)
        project.write_text(yaml.safe_dump(config, sort_keys=False))
        rows = [{"email": f"r{i:05d}@example.org", "keywords": ["model", '"language model"', "title:diffusion"][: 1 + i % 3]}
                for i in range(N)]
        readers = tmp_path / "readers.jsonl"
        readers.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert run("--quiet", "--file", str(project), "subscribers", "import", str(readers)) == 0
        rng = random.Random(20261128)
        kills, runs = 0, 0
        while True:
            runs += 1
            assert runs < 20, "send never finished"
            proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--quiet", "--file", str(project),
                                     "send", "--at", AT], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if kills < 4:
                time.sleep(rng.uniform(1.5, 6.0))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err.decode()
            break
    finally:
        controller.stop()
    per_rcpt: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for _, rcpts, raw in recorder.messages:
        per_rcpt[rcpts[0]] += 1
        ids.setdefault(rcpts[0], set()).add(message_from_bytes(raw, policy=policy.default)["Message-ID"])
    db = sqlite3.connect(tmp_path / ".newsletter" / "state.sqlite3")
    statuses = dict(db.execute("SELECT status, count(*) FROM issues GROUP BY status").fetchall())
    db.close()
    assert statuses.get("pending", 0) == 0 and statuses.get("failed", 0) == 0
    assert set(per_rcpt) == {r for r, in _sent(tmp_path)}  # every issue the ledger built went out
    assert len(per_rcpt) == statuses["sent"] and statuses["sent"] + statuses.get("empty", 0) == N
    duplicates = sum(c - 1 for c in per_rcpt.values())
    assert duplicates <= kills * (CONCURRENCY + GROUP)
    assert all(len(v) == 1 for v in ids.values())  # a re-send is the same message
    print(f"kills={kills} runs={runs} sent={statuses['sent']} duplicates={duplicates}")
    assert kills >= 1 and os.path.exists(tmp_path / ".newsletter" / "state.sqlite3")


def _sent(folder: Path) -> list[tuple[str]]:
    db = sqlite3.connect(folder / ".newsletter" / "state.sqlite3")
    rows = db.execute("SELECT subscriber FROM issues WHERE status='sent'").fetchall()
    db.close()
    return rows


def _store_held(tmp_path: Path, port: int, n: int, smtp_timeout: int = 30) -> list[str]:
    """A project whose n subscribers live in the store; the command line of its `send` in two build workers."""
    project = write_config(tmp_path, port=port)
    config = yaml.safe_load(project.read_text())
    config["subscribers"] = []
    config["newsletter"]["max_entries"] = 2
    config["newsletter"]["smtp"].update(timeout=smtp_timeout, concurrency=CONCURRENCY, retries=0)
    project.write_text(yaml.safe_dump(config, sort_keys=False))
    readers = tmp_path / "readers.jsonl"
    readers.write_text("".join(json.dumps({"email": f"r{i:05d}@example.org", "keywords": ["model"]}) + "\n"
                               for i in range(n)))
    assert run("--quiet", "--file", str(project), "subscribers", "import", str(readers)) == 0
    return [sys.executable, "-m", "newsletter", "--quiet", "--file", str(project), "send", "--at", AT,
            "--build-workers", "2"]


def _interrupted_then_finished(tmp_path: Path, interrupt: Callable[[subprocess.Popen[bytes]], None], *,
                               n: int = 6_000, smtp_timeout: int = 30) -> tuple[int, str, Counter[str]]:
    """A `send` of n store-held subscribers in two build workers, interrupted once mail flows, then
    a second `send` to the end: the first's exit code and error output, and the messages per recipient."""
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    proc = None
    try:
        send = _store_held(tmp_path, port, n, smtp_timeout)
        proc = subprocess.Popen(send, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 300
        while len(recorder.messages) < 600 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_spawned_children(proc.pid)) == 2 and proc.poll() is None, "the send finished before the interruption"
        interrupt(proc)
        _, err = proc.communicate(timeout=300)  # a run waiting for ever (see the tests) would end here
        assert len(recorder.messages) < n
        done = subprocess.run(send, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        controller.stop()
    per_rcpt = Counter(rcpts[0] for _, rcpts, _ in recorder.messages)
    assert set(per_rcpt) == {f"r{i:05d}@example.org" for i in range(n)}
    assert sum(c - 1 for c in per_rcpt.values()) <= CONCURRENCY + GROUP  # the stated bound
    assert {r for r, in _sent(tmp_path)} == set(per_rcpt)
    return proc.returncode, err.decode(), per_rcpt


def test_a_build_worker_killed_ends_the_send_with_an_error_and_the_next_send_finishes(tmp_path: Path) -> None:
    """A build worker that dies without a word (SIGKILL, the OOM killer) ends its `send` with an
    error that names it (before the fix: a wait for ever); what it committed is delivered by the
    next `send`."""
    code, err, _ = _interrupted_then_finished(
        tmp_path, lambda proc: os.kill(_spawned_children(proc.pid)[1], signal.SIGKILL))
    assert code == 1
    assert re.search(r"build worker [12] of 2 ended before finishing its batches \(killed by SIGKILL\)", err), err


def test_a_send_in_build_workers_stopped_by_the_breaker_ends(tmp_path: Path) -> None:
    """No server listening: the circuit breaker stops the run; the workers, asked to stop, say so
    and the `send` ends with the breaker's words (before the fix it waited for them for ever);
    nothing is marked sent and the next `send`, with the server up, delivers everyone once but the
    few the breaker tried (their retry is not due yet)."""
    n = 3_000
    port = free_port()
    send = _store_held(tmp_path, port, n)
    stopped = subprocess.run(send, capture_output=True, timeout=300)
    assert stopped.returncode == 3, stopped.stderr.decode()
    assert "consecutive connection failures; the rest stays pending" in stopped.stderr.decode()
    assert "build worker" not in stopped.stderr.decode()
    assert _sent(tmp_path) == []
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        done = subprocess.run(send, capture_output=True, timeout=600)
    finally:
        controller.stop()
    assert done.returncode == 0, done.stderr.decode()
    per_rcpt = Counter(rcpts[0] for _, rcpts, _ in recorder.messages)
    db = sqlite3.connect(tmp_path / ".newsletter" / "state.sqlite3")
    retry_later = {r for r, in db.execute("SELECT subscriber FROM issues WHERE status='pending' AND attempts > 0")}
    db.close()
    # the few the breaker tried wait for their retry; everyone else got one message
    assert 0 < len(retry_later) <= 2 * CONCURRENCY and set(per_rcpt.values()) == {1}
    assert set(per_rcpt) | retry_later == {f"r{i:05d}@example.org" for i in range(n)}
    assert not set(per_rcpt) & retry_later


def _spawned_children(pid: int) -> list[int]:
    """The build workers of a `send` (its spawned children, not the resource tracker), in start order."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry))
    return sorted(found)


def test_run_stopped_by_sigterm_while_workers_build_ends_and_the_next_run_finishes(tmp_path: Path) -> None:
    """`run` on a list big enough for build workers, stopped by SIGTERM mid-slot: the workers are
    asked to stop, say so, and the service ends (before the fix it waited for them for ever); the
    next run delivers the rest, nobody twice."""
    from test_workers import _config

    n = 6_000
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    proc = None
    try:
        folder = _config(tmp_path / "service", port).parent
        readers = tmp_path / "readers.jsonl"
        readers.write_text("".join(json.dumps({"email": f"r{i:05d}@example.org", "keywords": ["model"]}) + "\n"
                                   for i in range(n)))
        assert run("--quiet", "--file", str(folder / "subscribers.yaml"), "subscribers", "import", str(readers)) == 0
        service = [sys.executable, "-m", "newsletter", "--file", "subscribers.yaml", "run", "--once"]
        proc = subprocess.Popen(service, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while not recorder.messages and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_spawned_children(proc.pid)) == 2 and proc.poll() is None, "the run finished before the signal"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        assert "stopping: finishing in-flight deliveries" in err.decode()
        assert len(recorder.messages) < n
        again = subprocess.run(service, cwd=folder, capture_output=True, timeout=600)
        assert again.returncode == 0, again.stderr.decode()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        controller.stop()
    assert Counter(rcpts[0] for _, rcpts, _ in recorder.messages) == Counter(
        {f"r{i:05d}@example.org": 1 for i in range(n)})


def test_ctrl_c_during_a_send_in_build_workers_ends_it_and_the_next_send_finishes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while build workers build
    and mail flows: the workers leave it to the parent, which stops them and ends with 130; the
    connections interrupted mid-transaction are closed (smtp.timeout is 600 s here: a QUIT left
    waiting on one would show); the next `send` delivers the rest, nobody more than the bound."""
    code, err, _ = _interrupted_then_finished(tmp_path, lambda proc: os.killpg(proc.pid, signal.SIGINT),
                                              smtp_timeout=600)
    assert code == 130 and "interrupted" in err, err
