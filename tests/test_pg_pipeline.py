"""Commands and the pipeline on both stores: `--state` a SQLite file or a postgresql:// URL behaves the
same (send, status, edits, D2's claims), `db upgrade`, and `db copy` of a state made by this release
followed by `send` from PostgreSQL delivers nothing twice."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import run, write_config
from newsletter import ingest, pipeline
from newsletter.config import load
from newsletter.credentials import Secrets
from newsletter.store import Store, is_url
from newsletter.store.schema import SCHEMA_VERSION, SQLITE_V1
from newsletter.store_readers import Rating, ReaderStore

AT = "2026-11-27T09:00:00+00:00"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _import(tmp_path: Path, project: Path, state: str, n: int, start: int = 0) -> None:
    rows = [{"email": f"reader{i:04d}@example.org", "keywords": ['"language model"', "causal*"], "max_entries": 2}
            for i in range(start, start + n)]
    path = tmp_path / f"readers{start}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run("--file", str(project), "--state", state, "subscribers", "import", str(path)) == 0


def _per_recipient(recorder) -> Counter[str]:  # noqa: ANN001
    return Counter(rcpts[0] for _, rcpts, _ in recorder.messages)


def test_send_status_and_edits_on_either_store(smtp_server, tmp_path: Path, state: Path | str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    where = str(state)
    _import(tmp_path, project, where, 30)
    assert run("--file", str(project), "--state", where, "subscribers", "pause", "reader0003@example.org") == 0
    assert run("--file", str(project), "--state", where, "send", "--at", AT) == 0
    assert run("--file", str(project), "--state", where, "send", "--at", AT) == 0  # nothing twice
    got = _per_recipient(recorder)
    assert "reader0003@example.org" not in got and set(got.values()) == {1}
    assert len([e for e in got if e.startswith("reader")]) == 29 and "ada@example.org" in got
    capsys.readouterr()
    assert run("--file", str(project), "--state", where, "status", "--json", "--at", AT) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {s["email"]: s for s in info["subscribers"]}
    assert rows["reader0003@example.org"]["state"] == "paused"
    assert rows["reader0004@example.org"]["last_issue"]["status"] == "sent"
    assert info["claims"] == {} and info["pending"] == []
    # the default state beside the subscribers file was never touched when --state named another
    assert is_url(state) == (not (tmp_path / ".newsletter" / "state.sqlite3").exists())


def test_claims_hold_however_long_a_send_lasts(smtp_server, tmp_path: Path, state: Path | str) -> None:
    """D2 on both stores: a 2-second lease, a clock that runs 1 s per look; a second `send` started in
    the middle of the first takes none of its claims: 20 issues, 20 messages."""
    recorder, port = smtp_server
    subs = "".join(f"  - email: u{i:02d}@example.org\n    keywords: [model]\n" for i in range(20))
    config = load(write_config(tmp_path, port=port, subscribers=subs))
    ticks = [NOW]
    lock = threading.Lock()

    def clock() -> datetime:
        with lock:
            ticks[0] += timedelta(seconds=1)
            return ticks[0]

    with Store(state) as store:
        ingest.ingest_sources(store, config, NOW)
    second: list[pipeline.SendReport] = []

    def progress(outcome: object) -> None:
        if len(recorder.messages) >= 5 and not second:
            def other() -> None:
                with Store(state) as s2:
                    second.append(pipeline.send(config, s2, NOW, secrets=Secrets(), clock=clock,
                                                lease=timedelta(seconds=2), owner="other-host:1"))
            t = threading.Thread(target=other)
            t.start()
            t.join()

    with Store(state) as store:
        first = pipeline.send(config, store, NOW, secrets=Secrets(), clock=clock, lease=timedelta(seconds=2),
                              progress=progress)  # type: ignore[arg-type]
    assert second and second[0].sent == []
    assert len(first.sent) == 20 and len(recorder.messages) == 20


def test_db_upgrade_brings_a_first_release_file_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript(SQLITE_V1)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.commit()
    db.close()
    assert run("--file", str(project), "--state", str(old), "db", "upgrade") == 0
    assert capsys.readouterr().out == f"{old}: schema 1 -> {SCHEMA_VERSION}\n"
    assert run("--file", str(project), "--state", str(old), "db", "upgrade") == 0
    assert capsys.readouterr().out == f"{old}: schema {SCHEMA_VERSION}, up to date\n"


def test_db_upgrade_creates_a_postgresql_schema_and_refuses_a_foreign_database(
        tmp_path: Path, pg_cluster, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    import psycopg

    project = write_config(tmp_path)
    url = pg_cluster.database()
    assert run("--file", str(project), "--state", url, "db", "upgrade") == 0
    assert capsys.readouterr().out == f"{url}: schema none -> {SCHEMA_VERSION}\n"
    foreign = pg_cluster.database()
    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text)")
    assert run("--file", str(project), "--state", foreign, "db", "upgrade") == 1
    assert "holds other tables and no newsletter state" in capsys.readouterr().err
    with psycopg.connect(foreign) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'").fetchone() == (1,)


def test_a_password_in_the_url_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    assert run("--file", str(project), "--state", "postgresql://u:hunter2@127.0.0.1:1/db", "db", "upgrade") == 1
    err = capsys.readouterr().err
    assert "NEWSLETTER_DB_PASSWORD" in err and "hunter2" not in err


def test_db_copy_then_send_from_postgresql_delivers_nothing_twice(smtp_server, tmp_path: Path, pg_cluster,  # noqa: ANN001
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    sqlite_state = tmp_path / ".newsletter" / "state.sqlite3"
    _import(tmp_path, project, str(sqlite_state), 40)
    assert run("--file", str(project), "subscribers", "pause", "reader0001@example.org") == 0
    # a slot half delivered: the first 20 store-held readers (and the file's) got theirs
    only = ["ada@example.org", "grace@example.org", "nobody@example.org"] + \
        [f"reader{i:04d}@example.org" for i in range(20)]
    with Store(sqlite_state) as store:
        config = load(project)
        ingest.ingest_sources(store, config, NOW)
        pipeline.send(config, store, NOW, secrets=Secrets(), only=only)
    before = _per_recipient(recorder)
    assert len(before) == 21  # nobody@ gets nothing (no match), reader0001 paused
    with ReaderStore(sqlite_state) as readers:  # what the reader pages wrote: a rating, new links
        paper = readers.entries()[0].id
        readers.rate(Rating("reader0002@example.org", paper, None, -1, NOW))
        assert readers.rotate_links("reader0002@example.org") == 1
    url = pg_cluster.database()
    capsys.readouterr()
    assert run("--file", str(project), "db", "copy", "--to", url) == 0
    out = capsys.readouterr().out
    with Store(sqlite_state) as old, Store(url) as new:
        for table in ("entries", "subscribers", "subscriber_state", "issues", "issue_entries", "sources",
                      "ratings", "link_versions"):
            assert old.count(table) == new.count(table) > 0
            assert f"  {table} " in out
    with ReaderStore(url) as readers:
        assert [(r.entry_id, r.verdict) for r in readers.ratings("reader0002@example.org")] == [(paper, -1)]
        assert readers.link_version("reader0002@example.org") == 1
    assert run("--file", str(project), "db", "copy", "--to", url) == 1  # the target is not empty any more
    assert "not empty" in capsys.readouterr().err
    assert run("--file", str(project), "--state", url, "send", "--at", AT, "--no-fetch") == 0
    after = _per_recipient(recorder)
    assert set(after.values()) == {1}  # nothing twice
    assert len(after) == 40 - 1 + 2  # every reader but the paused one, and ada and grace
    with Store(url) as new:
        assert new.claims() == {} and {r.status for r in new.issues()} == {"sent", "empty"}


def test_explain_on_either_store(smtp_server, tmp_path: Path, state: Path | str,  # noqa: ANN001
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`explain` across every subscriber (two issues read each, around the paper's arrival) says
    "delivered" to exactly those a sent issue carried the paper to, on SQLite and PostgreSQL, and
    each subscriber alone gets the same sentence."""
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    where = str(state)
    _import(tmp_path, project, where, 30)
    assert run("--file", str(project), "--state", where, "send", "--at", AT) == 0
    with Store(where) as store:
        sent = store.issues("sent")
        carried = store.issue_entry_ids([i.id for i in sent])
    owner = {i.id: i.subscriber for i in sent}
    paper, _ = Counter(e for ids in carried.values() for e in ids).most_common(1)[0]
    capsys.readouterr()
    assert run("--file", str(project), "--state", where, "explain", paper, "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 33  # 30 imported, three in the file
    delivered = {r["subscriber"] for r in rows if r["reason"] == "delivered"}
    assert delivered == {owner[i] for i, ids in carried.items() if paper in ids} and len(delivered) > 1
    for row in rows[::7]:
        assert run("--file", str(project), "--state", where, "explain", paper, "--json",
                   "--subscriber", row["subscriber"]) == 0
        (alone,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert alone == row
