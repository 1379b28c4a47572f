"""Several workers sharing one PostgreSQL state (issue 14): three `send` processes in separate working
directories, sharing only the URL and the config, deliver a 20,000-subscriber slot; one is SIGKILLed
mid-run and its batches are finished after its lease; two `run --once` services started together
build each issue once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from aiosmtpd.controller import Controller

from conftest import LISTING, Recorder, free_port
from newsletter.ledger import GROUP
from newsletter.store import Store

LEASE = 4  # seconds: NEWSLETTER_CLAIM_LEASE of every worker
CONCURRENCY = 4


def _config(folder: Path, port: int) -> Path:
    """One worker's working directory: its own copy of the config and its data."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    shutil.copy(LISTING, folder / "data" / "listing.txt")
    config = {"newsletter": {
        "title": "Test Digest", "sender": "Test Digest <digest@example.org>",
        "sources": [{"name": "listing", "type": "hf-listing", "path": "data/listing.txt"}],
        "schedule": "0 * * * *", "timezone": "UTC", "max_entries": 2,
        "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 30, "concurrency": CONCURRENCY,
                 "max_per_connection": 100000, "retries": 0},
    }, "subscribers": []}
    path = folder / "subscribers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _cli(folder: Path, url: str, *args: str, worker: str = "", wait: bool = True) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEWSLETTER_CLAIM_LEASE": str(LEASE), "NEWSLETTER_WORKER": worker}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--quiet", "--file", "subscribers.yaml",
                             "--state", url, *args], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()
    return proc


def _shared(tmp_path: Path, url: str, port: int, n: int, workers: list[str]) -> list[Path]:
    """n subscribers imported into the store by an admin; one working directory per worker."""
    admin = tmp_path / "admin"
    _config(admin, port)
    readers = admin / "readers.jsonl"
    readers.write_text("".join(json.dumps({"email": f"r{i:05d}@example.org", "keywords": ["model"]}) + "\n"
                               for i in range(n)))
    _cli(admin, url, "subscribers", "import", str(readers))
    return [_config(tmp_path / w, port).parent for w in workers]


def _ingest(folder: Path, url: str) -> str:
    """Ingest the listing and return the time to send at: `ingest` stamps entries with the real time,
    and a first issue's window is the hour before the send's time, so the send is at the top of the
    hour after the ingest (computed when the test runs, not when it is collected) and its window is
    exactly the hour the ingest ran in. Within a minute of the hour it waits for the hour to pass."""
    now = datetime.now(timezone.utc)
    if now.minute == 59:
        time.sleep(61 - now.second)
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    _cli(folder, url, "ingest")
    return (hour + timedelta(hours=1)).isoformat()


def test_three_workers_deliver_a_20000_subscriber_slot_and_survive_a_sigkill(tmp_path: Path, pg_cluster) -> None:  # noqa: ANN001
    n = 20_000
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    url = pg_cluster.database()
    try:
        dirs = _shared(tmp_path, url, port, n, ["worker1", "worker2", "worker3"])
        at = _ingest(dirs[0], url)
        def start(i: int) -> subprocess.Popen[bytes]:
            return _cli(dirs[i - 1], url, "send", "--at", at, "--no-fetch", "--build-workers", "0", worker=f"w{i}",
                        wait=False)

        # the second worker starts first (all three walk the subscribers in the same order: one that
        # starts behind may find every batch taken and never hold a claim), the others once it holds
        # claims and mail is flowing; then it is killed while it holds them, the others working
        victim = start(2)
        deadline = time.monotonic() + 600
        with Store(url) as store:  # on a quiet machine a batch takes a second: poll often, on one connection
            while time.monotonic() < deadline and victim.poll() is None:
                held = sum(v for k, v in store.claims().items() if k.startswith("w2:"))
                if held and recorder.messages:
                    break
                time.sleep(0.02)
        workers = [start(1), victim, start(3)]
        time.sleep(0.5)  # the others are under way
        assert victim.poll() is None, f"the second worker finished before it could be killed ({len(recorder.messages)} received)"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        for w in (workers[0], workers[2]):
            _, err = w.communicate(timeout=900)
            assert w.returncode == 0, err.decode()
        # the survivors finished its batches in the same run, once its lease was over (a claim of a
        # named worker never passes before its lease: it may be on another machine)
        assert time.monotonic() - killed_at >= LEASE - 0.5
        with Store(url) as store:
            orphaned = sum(v for k, v in store.claims().items() if k.startswith("w2:"))
    finally:
        controller.stop()
    per_rcpt = Counter(rcpts[0] for _, rcpts, _ in recorder.messages)
    assert set(per_rcpt) == {f"r{i:05d}@example.org" for i in range(n)}
    duplicates = sum(c - 1 for c in per_rcpt.values())
    assert duplicates <= CONCURRENCY + GROUP  # the stated bound: in flight plus one commit group per kill
    with Store(url) as store:
        assert {r.status for r in store.issues()} == {"sent"} and store.count("issues") == n
        assert store.claims() == {}
    print(f"orphaned claims after the kill: {orphaned}; duplicates: {duplicates}")


def test_two_run_services_started_together_build_each_issue_once(tmp_path: Path, pg_cluster) -> None:  # noqa: ANN001
    n = 2_000
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    url = pg_cluster.database()
    try:
        dirs = _shared(tmp_path, url, port, n, ["machine-a", "machine-b"])
        services = [_cli(d, url, "run", "--once", worker=d.name, wait=False) for d in dirs]
        for s in services:
            _, err = s.communicate(timeout=600)
            assert s.returncode == 0, err.decode()
    finally:
        controller.stop()
    assert Counter(rcpts[0] for _, rcpts, _ in recorder.messages) == Counter(
        {f"r{i:05d}@example.org": 1 for i in range(n)})
    with Store(url) as store:
        assert store.count("issues") == n and {r.status for r in store.issues()} == {"sent"}
        assert store.count("entries") > 0 and [s.name for s in store.sources()].count("listing") == 1  # both fetched; the entries merged
