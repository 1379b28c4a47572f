"""The core at scale: store-held subscribers (import, export, edits, conflicts), claims that hold
however long a run lasts (D2), secrets reaching `run` (D1), schema upgrades, state size."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import run, write_config
from newsletter import roster
from newsletter.config import load
from newsletter.store_readers import ReaderStore
from newsletter.store import Store

AT = "2026-11-27T09:00:00+00:00"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"email": f"reader{i:04d}@example.org", "keywords": ['"language model"', "causal*"],
             "max_entries": 2, "timezone": "Europe/London" if i % 2 else "UTC"} for i in range(start, start + n)]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _status(project: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json") == 0
    return {s["email"]: s for s in json.loads(capsys.readouterr().out)["subscribers"]}


def test_import_send_export_round_trip(smtp_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    assert run("--file", str(project), "subscribers", "import", str(_jsonl(tmp_path / "list.jsonl", _rows(30)))) == 0
    assert "imported 30 subscribers" in capsys.readouterr().out
    assert run("--file", str(project), "validate") == 0
    assert "ok (3 subscribers, 30 in the state store, 1 sources)" in capsys.readouterr().out
    assert run("--file", str(project), "send", "--at", AT) == 0
    rcpts = {r for _, rs, _ in recorder.messages for r in rs}
    assert {f"reader{i:04d}@example.org" for i in range(30)} <= rcpts
    info = _status(project, capsys)
    assert info["reader0007@example.org"]["home"] == "store"
    assert info["reader0007@example.org"]["last_issue"]["status"] == "sent"
    # export -> import into a new state gives the same subscribers
    out = tmp_path / "export.jsonl"
    assert run("--file", str(project), "subscribers", "export", "--format", "jsonl", "--out", str(out)) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 30 and exported[1]["timezone"] == "Europe/London"
    other = tmp_path / "other.sqlite3"
    assert run("--file", str(project), "--state", str(other), "subscribers", "import", str(out)) == 0
    out2 = tmp_path / "export2.jsonl"
    assert run("--file", str(project), "--state", str(other), "subscribers", "export", "--out", str(out2)) == 0
    assert out2.read_text() == out.read_text()
    for fmt in ("csv", "yaml"):
        path = tmp_path / f"export.{fmt}"
        assert run("--file", str(project), "subscribers", "export", "--format", fmt, "--out", str(path)) == 0
        state = tmp_path / f"{fmt}.sqlite3"
        assert run("--file", str(project), "--state", str(state), "subscribers", "import", str(path)) == 0
        with Store(state) as a, Store(project.parent / ".newsletter" / "state.sqlite3") as b:
            assert a.subscribers_page(limit=100) == b.subscribers_page(limit=100)


def test_a_bad_row_imports_nothing_and_names_its_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    csv = tmp_path / "list.csv"
    csv.write_text("email,keywords,timezone\nok@example.org,model,UTC\nbad@example.org,\"\"\"unclosed\",UTC\n"
                   "worse@example.org,model,Mars/Olympus\n")
    assert run("--file", str(project), "subscribers", "import", str(csv)) == 2
    err = capsys.readouterr().err
    assert f"{csv}:3: subscribers[1] (bad@example.org).keywords[0]: unclosed quote" in err
    assert f"{csv}:4: subscribers[2] (worse@example.org).timezone: unknown time zone 'Mars/Olympus'" in err
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        assert store.subscriber_count() == 0


def test_an_address_in_the_file_and_the_store_is_a_validation_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    list_file = _jsonl(tmp_path / "l.jsonl", [{"email": "ADA@example.org", "keywords": ["x"]}])
    assert run("--file", str(project), "subscribers", "import", str(list_file)) == 2
    assert "defined in" in capsys.readouterr().err  # refused at import
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:  # a store that got it anyway
        config = load(project)
        store.add_subscribers([config.subscriber("ada@example.org")], NOW)  # type: ignore[list-item]
    assert run("--file", str(project), "validate") == 2
    err = capsys.readouterr().err
    assert "subscriber 'ada@example.org' is defined both in this file and in the state store" in err
    assert str(project) in err and "state.sqlite3" in err


def test_store_held_subscribers_are_edited_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    before = project.read_bytes()
    assert run("--file", str(project), "subscribers", "add", "eve@example.org", "--store", "--keyword", "RAG",
               "--timezone", "Asia/Tokyo") == 0
    assert run("--file", str(project), "subscribers", "set", "eve@example.org", "name", "Eve",
               "--add-keyword", "distill*", "--remove-keyword", "RAG") == 0
    assert run("--file", str(project), "subscribers", "set", "eve@example.org", "name", "Evelyn",
               "--add-exclude", '"unclosed') == 2  # one transaction: nothing changes
    capsys.readouterr()
    assert run("--file", str(project), "subscribers", "show", "eve@example.org") == 0
    out = capsys.readouterr().out
    assert "name:        Eve\n" in out and "keywords:    distill*\n" in out and "Asia/Tokyo" in out
    assert "lives in:    the state store" in out
    assert run("--file", str(project), "subscribers", "add", "eve@example.org", "--keyword", "x") == 2
    assert run("--file", str(project), "subscribers", "pause", "eve@example.org") == 0
    assert _status(project, capsys)["eve@example.org"]["state"] == "paused"
    assert run("--file", str(project), "subscribers", "remove", "eve@example.org") == 0
    assert "eve@example.org" not in _status(project, capsys)
    assert project.read_bytes() == before


def test_run_signs_with_the_dkim_key_from_the_environment(smtp_server, tmp_path: Path) -> None:
    """D1: the service reads NEWSLETTER_DKIM_KEY_FILE the same way `send` does."""
    import subprocess

    from newsletter.scheduler import Service

    recorder, port = smtp_server
    key = tmp_path / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    project = write_config(tmp_path, port=port, extra="  dkim: {domain: example.org, selector: s1}\n")
    service = Service(project, None, {"NEWSLETTER_DKIM_KEY_FILE": str(key)}, port=None, clock=lambda: NOW)
    service.fetch()
    report = service.send_now()
    assert report.sent and not report.failed
    assert all(raw.startswith(b"DKIM-Signature:") for _, _, raw in recorder.messages)


def test_a_state_file_of_the_previous_release_is_upgraded(tmp_path: Path) -> None:
    from newsletter.store import _V1, SCHEMA_VERSION

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_V1)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("INSERT INTO subscriber_state (email, unsubscribed_at) VALUES ('gone@example.org', '2026-01-01')")
    # an issue of that release and its papers, recorded in the email's order (no position then)
    db.execute("INSERT INTO issues (id, subscriber, slot, built_at, status, entry_count) VALUES "
               "('old1', 'ada@example.org', '2026-01-01T07:00:00+00:00', '2026-01-01T07:00:00+00:00', 'sent', 3)")
    for paper in ("2601.00009", "2601.00001", "2601.00005"):
        db.execute("INSERT INTO entries VALUES (?, ?, 'T', 'A', '[]', NULL, NULL, NULL, NULL, NULL, '{}', '[]', "
                   "'2026-01-01T06:00:00+00:00', '2026-01-01T06:00:00+00:00')", (paper, paper))
        db.execute("INSERT INTO issue_entries VALUES ('old1', 'ada@example.org', ?)", (paper,))
    # a pending issue with its message bytes in its row, as every release before schema 7 kept them
    db.execute("INSERT INTO issues (id, subscriber, slot, built_at, status, message_id, message, entry_count) VALUES "
               "('old2', 'ada@example.org', '2026-01-02T07:00:00+00:00', '2026-01-02T07:00:00+00:00', 'pending', "
               "'<old2@example.org>', ?, 0)", (b"From: x\r\n\r\nbody\r\n",))
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.version() == SCHEMA_VERSION
        assert store.unsubscribed() == {"gone@example.org"}
        assert store.subscriber_count() == 0
        # its bytes stay where that release put them, and the pending issue is delivered with them
        assert [r.id for r in store.pending_issues(NOW)] == ["old2"]
        assert store.messages(["old1", "old2"]) == {"old2": b"From: x\r\n\r\nbody\r\n"}
    with ReaderStore(path) as readers:  # read back in the order they were recorded
        assert [e.id for e in readers.issue_entries("old1")] == ["2601.00009", "2601.00001", "2601.00005"]


def test_an_unrelated_database_is_refused_and_left_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    project = write_config(tmp_path)
    assert run("--file", str(project), "--state", str(path), "ingest") == 1
    assert "not a newsletter state file" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_a_delivered_issue_keeps_no_message_bytes(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    assert run("--file", str(project), "send", "--at", AT) == 0
    db = sqlite3.connect(tmp_path / ".newsletter" / "state.sqlite3")
    rows = db.execute("SELECT status, length(message) FROM issues WHERE status='sent'").fetchall()
    kept = db.execute("SELECT count(*) FROM issue_messages").fetchone()
    db.close()
    assert rows and all(size is None for _, size in rows)
    assert kept == (0,)
    assert recorder.messages


def test_a_pending_issue_without_its_bytes_is_expired_with_a_reason_and_the_send_goes_on(
        smtp_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pending issue whose message bytes are missing (a state copied while another process sent)
    cannot be delivered: the next `send` expires it, says so (exit status 3, a partial delivery) and
    delivers the others."""
    from newsletter.store import NewIssue

    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    slot = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        store.record_issues([NewIssue("ada@example.org@2026112707", "ada@example.org", slot, slot, "pending", (),
                                      subject="s", message_id="<ada>", message=None)], None, None)
    capsys.readouterr()
    assert run("--file", str(project), "send", "--at", AT) == 3  # a partial delivery, said as such
    assert "ada@example.org: expired: not delivered: its message bytes are missing from the state" in \
        capsys.readouterr().err
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        broken = store.issue("ada@example.org@2026112707")
        assert broken is not None and broken.status == "expired"
        assert broken.last_error == "not delivered: its message bytes are missing from the state"
    assert recorder.messages and all("ada@example.org" not in rcpts for _, rcpts, _ in recorder.messages)


def test_a_delivered_issue_leaves_at_most_2_kb_of_state(tmp_path: Path) -> None:
    """What a slot of delivered issues adds to the state file, in pages in use: the issue's row and
    its papers' rows (8 here), at most 2 KB each. The ~30 KB of message bytes each pending issue had
    are freed for the next slot's (they used to leave ~4 KB per issue behind in the issues table)."""
    import random
    from datetime import timedelta

    from newsletter.store import NewIssue, Result

    rng = random.Random(7)
    path = tmp_path / "state.sqlite3"

    def in_use(store: Store) -> int:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0] - store.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(store.db.execute("PRAGMA page_size").fetchone()[0])

    def slot(store: Store, day: int, n: int = 600) -> None:
        at = NOW + timedelta(days=day)
        built = [NewIssue(f"reader{i:05d}@example.org@{at:%Y%m%d%H}", f"reader{i:05d}@example.org", at, at, "pending",
                          tuple(f"2611.{rng.randrange(100_000):05d}" for _ in range(8)),
                          subject="Daily Papers Digest: 8 new papers on your topics", message_id=f"<{i}.{day}@example.org>",
                          message=rng.randbytes(rng.randint(20_000, 38_000))) for i in range(n)]
        for k in range(0, n, 200):  # built and delivered a batch at a time, as `send` does
            batch = built[k:k + 200]
            store.record_issues(batch, "me:1", at + timedelta(hours=1))
            store.record_results([Result(b.id, b.subscriber, "sent") for b in batch], at, "me:1", 3)

    with Store(path) as store:
        slot(store, 0)
        before = in_use(store)
        slot(store, 1)
        slot(store, 2)
        grown = (in_use(store) - before) / 1200
        assert store.db.execute("SELECT count(*) FROM issue_messages").fetchone() == (0,)
        assert store.db.execute("SELECT count(*) FROM issues WHERE status='sent'").fetchone() == (1800,)
    assert 0 < grown <= 2048, grown


def test_dropping_a_sent_issues_bytes_does_not_write_them_again(tmp_path: Path) -> None:
    """Marking an issue sent frees its message bytes without overwriting them with zeros (what
    SQLite builds with SECURE_DELETE do by default): the write-ahead log grows by a few pages, not
    by the size of the message, so the delivering process does not write every message twice."""
    from newsletter.store import NewIssue, Result

    path = tmp_path / "state.sqlite3"
    message = b"From: x\r\n\r\n" + b"".join(b"line %06d of the digest\r\n" % i for i in range(8000))  # 216 KB
    with Store(path) as store:
        issue = NewIssue("a@example.org@2026112707", "a@example.org", NOW, NOW, "pending", ("2611.00001",),
                         subject="s", message_id="<a>", message=message)
        store.record_issues([issue], "me:1", None)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert (tmp_path / "state.sqlite3-wal").stat().st_size == 0
        store.record_results([Result(issue.id, "a@example.org", "sent")], NOW, "me:1", 3)
        grown = (tmp_path / "state.sqlite3-wal").stat().st_size
        assert store.issue(issue.id).status == "sent"  # type: ignore[union-attr]
        assert store.count("issue_messages") == 0  # the bytes are gone, without being written again
    assert 0 < grown < len(message) // 4, grown


def test_the_write_ahead_log_is_copied_and_cut_back_at_its_bound(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A state file opened by the tool copies its write-ahead log into the file every WAL_PAGES pages
    (not SQLite's default 1,000) and cuts the log back to that size after a copy, so the log on disk
    stays bounded however much a `send` writes: here with a bound of 64 pages, 40 pending issues of
    30 KB (~300 pages in all, never copied with the default) leave a log of at most the bound and one
    commit."""
    from newsletter.store import NewIssue, sqlite as sqlite_store

    with Store(tmp_path / "default.sqlite3") as store:  # the bound a real state file gets
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == sqlite_store.WAL_PAGES
    monkeypatch.setattr(sqlite_store, "WAL_PAGES", 64)
    path = tmp_path / "state.sqlite3"
    message = b"".join(b"line %06d of the digest\r\n" % i for i in range(1200))  # ~30 KB
    with Store(path) as store:
        page = store.db.execute("PRAGMA page_size").fetchone()[0]
        for k in range(40):
            email = f"r{k}@example.org"
            store.record_issues([NewIssue(f"{email}@2026112707", email, NOW, NOW, "pending", ("2611.00001",),
                                          subject="s", message_id=f"<{k}>", message=message)], "me:1", None)
        wal = (tmp_path / "state.sqlite3-wal").stat().st_size
        assert store.count("issues") == 40
    assert 0 < wal <= (64 + 16) * (page + 24) + 32, (wal, page)


def test_status_of_a_state_path_that_does_not_exist_is_an_error(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    typo = tmp_path / "typo" / "state.sqlite3"
    assert run("--file", str(project), "--state", str(typo), "status") == 2  # a usage error
    assert f"{typo}: no state file there" in capsys.readouterr().err
    assert not typo.parent.exists()


def test_an_import_is_validated_a_chunk_at_a_time_with_every_problem_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded by the chunk (the generated YAML of 5,000 rows at most), whatever the
    size of the list; problems in any chunk, and an address repeated across chunks, are all named
    by their row, and nothing is imported."""
    monkeypatch.setattr(roster, "VALIDATE_CHUNK", 2)
    project = write_config(tmp_path)
    rows = [{"email": f"r{i}@example.org", "keywords": ["model"]} for i in range(5)]
    rows[3]["timezone"] = "Mars/Olympus"
    rows.append({"email": "R1@example.org", "keywords": ["model"]})  # row 6 repeats row 2 (another chunk)
    list_file = _jsonl(tmp_path / "l.jsonl", rows)
    assert run("--file", str(project), "subscribers", "import", str(list_file)) == 2
    err = capsys.readouterr().err
    assert f"{list_file}:4: subscribers[3] (r3@example.org).timezone: unknown time zone 'Mars/Olympus'" in err
    assert f"{list_file}:6: subscribers[5].email: duplicate subscriber 'r1@example.org' (already at row 2)" in err
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        assert store.subscriber_count() == 0
    del rows[3]["timezone"], rows[5]
    assert run("--file", str(project), "subscribers", "import", str(_jsonl(tmp_path / "ok.jsonl", rows))) == 0
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        assert store.subscriber_count() == 5


@pytest.mark.parametrize("workers", [2, 3])
def test_build_workers_shares_are_the_batches_split_exactly(tmp_path: Path, workers: int) -> None:
    """Each build worker steps over the other workers' batches without reading them; together the
    shares are every batch once, in the same order, filtered or not (file and store subscribers)."""
    project = write_config(tmp_path)
    assert run("--file", str(project), "subscribers", "import", str(_jsonl(tmp_path / "r.jsonl", _rows(53)))) == 0
    cfg = load(project)
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        book = roster.Roster(cfg, store)
        london = next(s for s in store.subscribers_page("", 100) if s.timezone == "Europe/London")
        for group in (None, (london.schedule, london.timezone)):
            whole = [[s.email for s in b] for b in book.subscriber_batches(7, group=group)]
            shares = [[[s.email for s in b] for b in book.subscriber_batches(7, group=group, share=(k, workers))]
                      for k in range(workers)]
            assert len(whole) >= (8 if group is None else 4) and sum(map(len, shares)) == len(whole)
            for k, share in enumerate(shares):
                assert share == whole[k::workers], (group, k)
