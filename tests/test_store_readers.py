"""The readers' tables, the same on SQLite and on PostgreSQL (a real server the suite starts):
sign-ups, rate limits, ratings, bounces, revocable links, pauses with an end, issues as the web
shows them; snapshots never write."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from newsletter.models import Entry, Links, Subscriber
from newsletter.store import NewIssue, Result
from newsletter.store_readers import PostgresReaderStore, Rating, ReaderStore, Signup, SqliteReaderStore

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
ADA = "ada@example.org"


def _sub(email: str) -> Subscriber:
    return Subscriber(email, "Ada", ("model",), (), "0 7 * * *", "UTC", 5, 0, False, home="store")


def _entry(i: int) -> Entry:
    return Entry(id=f"2611.{i:05d}", title=f"Paper {i}", abstract="About models.", authors=("A. Author",),
                 links=Links(page=f"https://x/{i}"), sources=("t",))


def test_the_dialect_is_chosen_by_the_location(state: Path | str) -> None:
    with ReaderStore(state) as store:
        assert isinstance(store, PostgresReaderStore if isinstance(state, str) else SqliteReaderStore)
    with ReaderStore(state) as again:  # opening twice creates nothing twice
        assert again.link_version(ADA) == 0


def test_signups_are_replaced_confirmed_once_and_purged(state: Path | str) -> None:
    with ReaderStore(state) as store:
        store.put_signup(Signup(ADA, "n1", {"keywords": ["model"]}, NOW, NOW + timedelta(hours=48)))
        store.put_signup(Signup(ADA, "n2", {"keywords": ["diffusion"]}, NOW, NOW + timedelta(hours=48)))
        pending = store.signup(ADA)
        assert pending is not None and pending.nonce == "n2" and pending.profile == {"keywords": ["diffusion"]}
        assert pending.expires_at == NOW + timedelta(hours=48)
        assert not store.confirm_signup(ADA, "n1", _sub(ADA), NOW)  # the replaced link is dead
        store.set_unsubscribed(ADA, NOW - timedelta(days=3))
        assert store.confirm_signup(ADA, "n2", _sub(ADA), NOW)
        assert not store.confirm_signup(ADA, "n2", _sub(ADA), NOW)  # once
        assert store.subscriber(ADA) == _sub(ADA) and store.states([ADA])[ADA].unsubscribed_at is None
        assert store.confirm_signup(ADA, "x", None, NOW) is False
        store.put_signup(Signup("bo@example.org", "n3", {}, NOW, NOW + timedelta(hours=1)))
        store.take_rate([("ip:1", 5)], NOW - timedelta(hours=1), NOW)
        assert store.purge(NOW + timedelta(hours=2), NOW + timedelta(minutes=1)) == 1
        assert store.signup("bo@example.org") is None and store.count("rate_events") == 0


def test_rate_limits_count_every_bucket_or_none_even_under_concurrency(state: Path | str) -> None:
    since = NOW - timedelta(hours=1)
    with ReaderStore(state) as store:
        assert store.take_rate([("addr:a", 2), ("ip:1", 3)], since, NOW)
        assert store.take_rate([("addr:a", 2), ("ip:1", 3)], since, NOW)
        assert not store.take_rate([("addr:a", 2), ("ip:1", 3)], since, NOW)  # the address is spent
        assert store.take_rate([("addr:b", 2), ("ip:1", 3)], since, NOW)
        assert not store.take_rate([("addr:c", 2), ("ip:1", 3)], since, NOW)  # now the client is
        assert store.take_rate([("addr:a", 2)], NOW, NOW + timedelta(hours=2))  # a new hour
    answers: list[bool] = []

    def take() -> None:
        with ReaderStore(state) as mine:
            answers.append(mine.take_rate([("ip:2", 4)], since, NOW))
    threads = [threading.Thread(target=take) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 6 + [True] * 4


def test_ratings_links_and_bounces(state: Path | str) -> None:
    with ReaderStore(state) as store:
        store.rate(Rating(ADA, "2611.00001", "i1", 1, NOW))
        store.rate(Rating(ADA, "2611.00001", "i2", -1, NOW + timedelta(minutes=1)))  # changed mind
        store.rate(Rating(ADA, "2611.00002", None, 1, NOW))
        assert [(r.entry_id, r.verdict, r.issue_id) for r in store.ratings(ADA)] == \
            [("2611.00001", -1, "i2"), ("2611.00002", 1, None)]
        store.forget_rating(ADA, "2611.00002")
        assert [r.entry_id for r in store.ratings(ADA)] == ["2611.00001"]
        assert store.rotate_links(ADA) == 1 and store.rotate_links(ADA) == 2
        assert store.link_versions([ADA, "bo@example.org"]) == {ADA: 2}
        since = NOW - timedelta(days=30)
        assert store.record_bounce("r1", ADA, "soft", "4.2.2", None, NOW, soft_limit=2, since=since) == "recorded"
        assert store.record_bounce("r1", ADA, "soft", "4.2.2", None, NOW, soft_limit=2, since=since) is None
        assert store.states([ADA]).get(ADA) is None or store.states([ADA])[ADA].bounced_at is None
        assert store.record_bounce("r2", ADA, "soft", "4.2.2", None, NOW, soft_limit=2, since=since) == "suppressed"
        assert store.states([ADA])[ADA].bounced_at == NOW
        assert store.record_bounce("r3", "bo@example.org", "hard", "5.1.1", "i9", NOW, soft_limit=5,
                                   since=since) == "suppressed"


def test_pauses_with_an_end_are_lifted_when_it_comes_and_only_then(state: Path | str) -> None:
    end = NOW + timedelta(days=3)
    with ReaderStore(state) as store:
        store.set_pause(ADA, "paused by the reader until 2026-11-30 (…)", NOW, end)
        store.set_pause("bo@example.org", "paused by an editor", NOW)  # no end: never lifted
        assert store.paused_until(ADA) == end and store.paused_until("bo@example.org") is None
        assert store.end_pauses(end - timedelta(seconds=1)) == []
        assert store.end_pauses(end) == [ADA]
        row = store.states([ADA])[ADA]
        assert row.paused_reason is None and row.paused_at is None and store.paused_until(ADA) is None
        assert store.states(["bo@example.org"])["bo@example.org"].paused_reason == "paused by an editor"
        # a pause with an end, then resumed early: nothing is left to lift later
        store.set_pause(ADA, "until", NOW, end)
        store.set_pause(ADA, None, NOW)
        store.record_results([], NOW, "w", 3)
        assert store.end_pauses(end + timedelta(days=1)) == []


def test_issues_as_the_web_shows_them(state: Path | str) -> None:
    with ReaderStore(state) as store:
        store.upsert_entries([_entry(i) for i in (3, 1, 2)], NOW)
        store.record_issues([NewIssue("i1", ADA, NOW, NOW, "pending", ("2611.00003", "2611.00001", "2611.00002"),
                                      subject="Digest", message_id="<m1@x>", message=b"x")], "w", NOW)
        assert store.sent_issue("i1") is None
        store.record_results([Result("i1", ADA, "sent")], NOW, "w", 3)
        sent = store.sent_issue("i1")
        assert sent is not None and sent.subject == "Digest" and sent.entry_count == 3
        assert [s.id for s in store.sent_issues(ADA)] == ["i1"]
        assert [e.id for e in store.issue_entries("i1")] == ["2611.00003", "2611.00001", "2611.00002"]
        assert store.issue_for_message_id("<m1@x>") == ("i1", ADA) and store.issue_subscriber("i1") == ADA
        assert set(store.entries_by_id(["2611.00001", "nope"])) == {"2611.00001"}


def test_a_snapshot_has_the_tables_and_never_writes(state: Path | str) -> None:
    with ReaderStore(state) as store:
        store.rotate_links(ADA)
    with ReaderStore.snapshot(state) as copy:
        assert copy.link_version(ADA) == 1
        copy.rotate_links(ADA)
        copy.rate(Rating(ADA, "e", None, 1, NOW))
    with ReaderStore(state) as store:
        assert store.link_version(ADA) == 1 and store.ratings(ADA) == []


def test_a_digest_reads_link_versions_from_any_store_of_either_dialect(state: Path | str) -> None:
    from newsletter.store import Store
    from newsletter.store_readers import link_versions

    with Store(state) as plain:
        assert link_versions(plain, [ADA]) == {}  # no page ever served: no readers' tables, version 0
    with ReaderStore(state) as store:
        store.rotate_links(ADA)
    with Store(state) as plain:
        assert not isinstance(plain, ReaderStore) and link_versions(plain, [ADA, "bo@example.org"]) == {ADA: 1}


def test_an_issue_s_papers_read_back_in_their_order_after_a_paper_takes_its_arxiv_id(state: Path | str) -> None:
    """The archive shows an issue's papers in the order the email did, also after one of them was
    merged into the same paper seen with its arXiv id (on PostgreSQL the updated row moves)."""
    first = Entry(id="t:0123456789abcdef", title="A Study of Models", abstract="About models.", sources=("l",))
    papers = [first, _entry(2), _entry(3)]
    with ReaderStore(state) as store:
        store.upsert_entries(papers, NOW)
        issue = NewIssue("i1", ADA, NOW, NOW, "pending", tuple(p.id for p in papers), subject="s",
                         message_id="<i1>", message=b"x\r\n", expires_at=NOW + timedelta(days=1))
        store.record_issues([issue], None, None)
        assert [e.id for e in store.issue_entries("i1")] == [p.id for p in papers]
        store.upsert_entries([Entry(id="2611.00001", title="A Study of Models", abstract="About models.",
                                    sources=("hf",))], NOW + timedelta(hours=1))
        assert [e.id for e in store.issue_entries("i1")] == ["2611.00001", "2611.00002", "2611.00003"]


def test_an_issue_recorded_before_schema_6_keeps_its_order_after_a_paper_takes_its_arxiv_id(state: Path | str) -> None:
    """Rows written by an earlier release have no position: the upgrade gives PostgreSQL's theirs (a
    merge would move a row there); SQLite reads them in the order they were written."""
    from newsletter.store import schema

    ids = ["t:0123456789abcdef", "2611.00002", "2611.00003"]
    issue = ("old1", ADA, "2026-11-27T07:00:00+00:00", "2026-11-27T07:00:00+00:00", "sent", 3)
    if isinstance(state, str):
        import psycopg

        _postgres_at_version_5(state)
        with psycopg.connect(state, autocommit=True) as conn:
            conn.execute("INSERT INTO issues (id, subscriber, slot, built_at, status, entry_count) "
                         "VALUES (%s, %s, %s, %s, %s, %s)", issue)
            for paper in ids:
                conn.execute("INSERT INTO issue_entries VALUES ('old1', %s, %s)", (ADA, paper))
    else:
        import sqlite3

        state.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(state)
        db.executescript(schema.SQLITE_V1 + "".join(schema.SQLITE_UPGRADES[v] for v in (2, 3, 4, 5)))
        db.execute("INSERT INTO meta VALUES ('schema', '5')")
        db.execute("INSERT INTO issues (id, subscriber, slot, built_at, status, entry_count) VALUES (?,?,?,?,?,?)",
                   issue)
        db.executemany("INSERT INTO issue_entries VALUES ('old1', ?, ?)", [(ADA, p) for p in ids])
        db.commit()
        db.close()
    with ReaderStore(state) as store:
        store.upsert_entries([Entry(id=ids[0], title="A Study of Models", abstract="About models.", sources=("l",)),
                              _entry(2), _entry(3)], NOW)
        assert [e.id for e in store.issue_entries("old1")] == ids
        store.upsert_entries([Entry(id="2611.00001", title="A Study of Models", abstract="About models.",
                                    sources=("hf",))], NOW + timedelta(hours=1))
        assert [e.id for e in store.issue_entries("old1")] == ["2611.00001", "2611.00002", "2611.00003"]


def _postgres_at_version_5(url: str) -> None:
    """An empty PostgreSQL state as the release before schema 6 made it."""
    import psycopg

    from newsletter.store import schema

    with psycopg.connect(url, autocommit=True) as conn:
        for script in (schema.POSTGRES_V2, *(schema.POSTGRES_UPGRADES[v] for v in (3, 4, 5))):
            for statement in schema.statements(script):
                conn.execute(statement)  # type: ignore[call-overload]
        conn.execute("INSERT INTO meta VALUES ('schema', '5')")


def test_a_snapshot_taken_while_another_process_upgrades_sees_the_upgraded_schema(pg_cluster) -> None:  # noqa: ANN001
    """A read-only command's snapshot that began before another process upgraded the schema (and then
    waited for the schema lock) does not fail on the columns that process added: it starts again."""
    import psycopg

    from newsletter.store import SCHEMA_VERSION, Store
    from newsletter.store import postgres, schema

    url = pg_cluster.database()
    _postgres_at_version_5(url)
    other = psycopg.connect(url)  # another process, in the middle of its upgrade, holding the schema lock
    other.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (postgres._SCHEMA_LOCK,))
    for version in range(6, SCHEMA_VERSION + 1):
        for statement in schema.statements(schema.POSTGRES_UPGRADES[version]):
            other.execute(statement)  # type: ignore[call-overload]
    other.execute("UPDATE meta SET value=%s WHERE key='schema'", (str(SCHEMA_VERSION),))
    out: dict[str, object] = {}

    def read() -> None:
        try:
            with Store.snapshot(url) as snap:
                out["version"] = snap.version()
        except Exception as exc:  # noqa: BLE001  # reported below
            out["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    with psycopg.connect(url, autocommit=True) as watch:  # until the snapshot waits for the schema lock
        while not watch.execute("SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND NOT granted"
                                ).fetchone()[0]:  # type: ignore[index]
            assert reader.is_alive(), out
            time.sleep(0.02)
    other.commit()
    other.close()
    reader.join()
    assert out == {"version": SCHEMA_VERSION}
