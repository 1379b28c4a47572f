"""End to end at scale: N subscribers imported into the store, 500 entries, one slot, `newsletter send`
into Postfix's `smtp-sink` on 127.0.0.1, and in the same run `smtp-source` with a message of the same
size and the same concurrency against the same sink (the ratio is what to compare across machines).
With a SQLite state it also prints what the delivered issues added to the file (pages in use).

    python bench/end_to_end.py                      # 100,000 subscribers, the whole `send`
    python bench/end_to_end.py -n 10000 --stage render   # building only (match, render, message bytes)
    python bench/end_to_end.py --stage send        # delivery only: the built messages re-sent from the ledger

Needs Debian's postfix package for /usr/sbin/smtp-sink and smtp-source (only those binaries run;
never the Postfix daemon): `apt-get install -y postfix`. Deterministic: the same N and seed give
the same subscribers, entries and messages.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import yaml

ROOT = Path(__file__).resolve().parent.parent
SINK, SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"
# `ingest` stamps entries with the real time; every subscriber is due at the next top of the hour,
# and a first issue's window is the hour before it: the hour the ingest runs in (checked below).
AT = (datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).isoformat()
ZONES = ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata"]
TOPICS = ["language model", "diffusion", "reinforcement learning", "graph neural network", "quantization",
          "distillation", "retrieval augmented generation", "vision transformer", "speech recognition",
          "causal inference", "protein folding", "robot manipulation", "code generation", "benchmark",
          "mixture of experts", "alignment", "reasoning", "agents", "multimodal", "federated learning",
          "time series", "tokenizer", "sparse attention", "world model", "video generation"]
WORDS = ("we propose a method that improves the state of the art on several tasks while using less compute "
         "our experiments show consistent gains across datasets and scales with an analysis of failure "
         "modes and ablations of each component").split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entries(rng: random.Random, n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        topics = rng.sample(TOPICS, 3)
        title = f"{topics[0].title()} meets {topics[1]}: study {i}"
        body = " ".join(rng.choice(WORDS) for _ in range(140))
        abstract = f"We study {topics[0]} and {topics[1]} with {topics[2]}. {body.capitalize()}."
        out.append({"id": f"2611.{i:05d}", "title": title, "abstract": abstract,
                    "authors": [f"Author {rng.randint(1, 999)}" for _ in range(rng.randint(1, 6))],
                    "published": "2026-11-26", "upvotes": rng.randint(0, 200),
                    "links": {"page": f"https://huggingface.co/papers/2611.{i:05d}"}})
    return out


def _query(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    kind = rng.random()
    if kind < 0.3:
        return f'"{topic}"' if " " in topic else topic
    if kind < 0.5:
        return f"title:{topic.split()[0]}"
    if kind < 0.7:
        return f"{topic.split()[0][:5]}*"
    if kind < 0.85:
        return f'"{topic}" AND NOT survey' if " " in topic else f"{topic} AND NOT survey"
    return f"abstract:({topic.split()[0]} OR {rng.choice(TOPICS).split()[0]})"


def _subscribers(rng: random.Random, n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        row: dict[str, object] = {"email": f"reader{i:06d}@example.org",
                                  "keywords": [_query(rng) for _ in range(rng.randint(3, 10))],
                                  "timezone": rng.choice(ZONES), "max_entries": rng.choice([5, 8, 10])}
        if rng.random() < 0.3:
            row["exclude"] = [rng.choice(["survey", "title:benchmark", '"position paper"'])]
        out.append(row)
    return out


def _project(folder: Path, n: int, seed: int, port: int, concurrency: int, state: str | None) -> Path:
    rng = random.Random(seed)
    (folder / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _entries(rng, 500)))
    (folder / "readers.jsonl").write_text("".join(json.dumps(s) + "\n" for s in _subscribers(rng, n)))
    config = {"newsletter": {
        "title": "Bench Digest", "sender": "Bench Digest <digest@example.org>",
        "sources": [{"name": "bench", "type": "file", "path": "entries.jsonl"}],
        "schedule": "0 * * * *",  # hourly: every zone (whole-hour offsets) is due at the same instant
        "timezone": "UTC", "max_entries": 10,
        "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 60,
                 "concurrency": concurrency, "max_per_connection": 100000, "retries": 0},
    }, "subscribers": []}
    path = folder / "subscribers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _cli(project: Path, state: str, *args: str, verbose: bool = False) -> tuple[float, int, str]:
    """Run `newsletter ARGS`; returns (seconds, peak RSS in MB, stderr)."""
    cmd = [sys.executable, "-m", "newsletter", "--quiet" if not verbose else "--verbose", "--file", str(project),
           "--state", state, *args]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(args)} failed:\n{err}")
    return seconds, usage.ru_maxrss // 1024, err


def _ledger(state: str) -> tuple[dict[str, int], float]:
    """Issues per status and the mean size of a sent message, from either store."""
    sys.path.insert(0, str(ROOT))
    from newsletter.store import Store, location

    with Store(location(state)) as store:
        statuses = {s: len(store.issues(s)) for s in ("pending", "sent", "failed", "empty", "expired")}
        return {k: v for k, v in statuses.items() if v}, store.mean_size("sent")


def _in_use(state: str) -> int | None:
    """Bytes of a SQLite state file's pages in use (its free pages left out); None for PostgreSQL."""
    if "://" in state:
        return None
    db = sqlite3.connect(f"file:{quote(state)}?mode=ro", uri=True)
    try:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def _fresh(state: str) -> None:
    """A PostgreSQL state must start empty, as the temporary SQLite file does: drop our tables."""
    import psycopg

    from newsletter.store import TABLES

    with psycopg.connect(state, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS meta, {', '.join(TABLES)}")


def _sink(port: int) -> subprocess.Popen[bytes]:
    args = [SINK, "-c"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    # its counter (-c) into a pipe nobody reads would fill it after ~2,600 messages and stall the sink
    proc = subprocess.Popen([*args, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("smtp-sink did not start")


def _smtp_source(port: int, n: int, size: int, concurrency: int) -> float:
    t = time.perf_counter()
    subprocess.run([SOURCE, "-s", str(concurrency), "-m", str(n), "-l", str(size), "-f", "digest@example.org",
                    "-t", "reader@example.org", f"127.0.0.1:{port}"], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--subscribers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--stage", choices=("all", "render", "send"), default="all")
    ap.add_argument("--state", help="a PostgreSQL URL, e.g. postgresql:///bench?host=/tmp/pg (its newsletter "
                                    "tables are dropped first; default: a SQLite file in a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if args.stage != "render" and not (Path(SINK).exists() and Path(SOURCE).exists()):
        sys.exit("needs /usr/sbin/smtp-sink and smtp-source: apt-get install -y postfix")
    folder = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    port = _free_port()
    project = _project(folder, args.subscribers, args.seed, port, args.concurrency, args.state)
    state = args.state or str(folder / "state.sqlite3")
    if args.state:
        sys.path.insert(0, str(ROOT))
        _fresh(args.state)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {datetime.now(timezone.utc):%Y-%m-%d}")
    print(f"subscribers {args.subscribers:,}, entries 500, concurrency {args.concurrency}")
    t_import, rss_import, _ = _cli(project, state, "subscribers", "import", str(folder / "readers.jsonl"))
    t_ingest, _, _ = _cli(project, state, "ingest")
    if datetime.now(timezone.utc) >= datetime.fromisoformat(AT):
        sys.exit("the hour turned while the subscribers were imported: the entries are outside the slot's "
                 "window; run again")
    print(f"import      {t_import:7.1f} s  (peak RSS {rss_import} MB)")
    print(f"ingest      {t_ingest:7.1f} s")
    sink = None
    try:
        if args.stage == "render":
            outbox = folder / "outbox"
            t, rss, err = _cli(project, state, "send", "--no-fetch", "--at", AT, "--outbox", str(outbox), verbose=True)
            stages = re.search(r"stages: (.*)", err)
            build = float(re.search(r"build ([\d.]+) s", err).group(1)) if stages else t  # type: ignore[union-attr]
            print(f"send into a Maildir {t:7.1f} s, peak RSS {rss} MB; {stages.group(1) if stages else ''}")
            print(f"building: {args.subscribers / build:,.0f} complete messages/s (one core)")
            return
        sink = _sink(port)
        before = _in_use(state)
        t, rss, err = _cli(project, state, "send", "--no-fetch", "--at", AT, verbose=True)
        stages = re.search(r"stages: (.*)", err)
        statuses, size = _ledger(state)
        print(f"send        {t:7.1f} s  {args.subscribers / t:,.0f} emails/s  peak RSS {rss} MB")
        print(f"  stages: {stages.group(1) if stages else '?'}; ledger: {statuses}")
        after = _in_use(state)
        if before is not None and after is not None and statuses.get("sent"):
            print(f"  state: +{(after - before) / 1e6:.1f} MB in use, {(after - before) / statuses['sent']:,.0f} bytes "
                  "per delivered issue")
        # the same number of messages of the same mean size through the same sink, same concurrency
        msg_size = int(size) or 54 * 1024
        t_src = _smtp_source(port, args.subscribers, msg_size, args.concurrency)
        print(f"smtp-source {t_src:7.1f} s  {args.subscribers / t_src:,.0f} emails/s  ({msg_size / 1024:.1f} KB, "
              f"-s {args.concurrency})")
        print(f"ratio send / smtp-source (emails/s): {t_src / t:.2f}")
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


if __name__ == "__main__":
    main()
