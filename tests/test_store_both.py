"""The state store's behaviour, the same on SQLite and on PostgreSQL (a real server the suite starts):
entries, the ledger's transitions, claims and leases, subscriber state, store-held subscribers,
source cursors, snapshots, schema versions."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.errors import StateError
from newsletter.ledger import Ledger, stealable
from newsletter.models import Entry, Links, Subscriber
from newsletter.store import SCHEMA_VERSION, NewIssue, Result, Store, is_url

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SLOT = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)


def _entry(i: int, **kw: object) -> Entry:
    fields: dict[str, object] = {"id": f"2611.{i:05d}", "title": f"Paper {i}", "abstract": "About models.",
                                 "authors": ("A. Author",), "links": Links(page=f"https://x/{i}"), "sources": ("t",)}
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def _sub(email: str, **kw: object) -> Subscriber:
    fields: dict[str, object] = {"email": email, "name": None, "keywords": ("model",), "exclude": (),
                                 "schedule": "0 7 * * *", "timezone": "UTC", "max_entries": 5, "min_upvotes": 0,
                                 "send_empty": False, "home": "store"}
    fields.update(kw)
    return Subscriber(**fields)  # type: ignore[arg-type]


def _issue(email: str, slot: datetime = SLOT, *, entries: tuple[str, ...] = ("2611.00001",)) -> NewIssue:
    return NewIssue(f"{email}@{slot:%Y%m%d%H}", email, slot, NOW, "pending", entries, subject="s",
                    message_id=f"<{email}>", message=b"From: x\r\n\r\nbody\r\n", expires_at=slot + timedelta(days=1))


def test_entries_are_inserted_merged_and_listed(state: Path | str) -> None:
    with Store(state) as store:
        assert store.version() == SCHEMA_VERSION
        assert store.upsert_entries([_entry(1), _entry(2)], NOW) == {"new": 2, "updated": 0, "unchanged": 0}
        assert store.upsert_entries([_entry(1), _entry(2, upvotes=9)], NOW + timedelta(hours=1)) == \
            {"new": 0, "updated": 1, "unchanged": 1}
        assert [e.id for e in store.entries()] == ["2611.00001", "2611.00002"]
        assert store.entries(since=NOW) == []
        assert store.entry_count() == 2
        # the same paper first seen without an arXiv id takes the id when it arrives
        store.upsert_entries([_entry(3, id="t:0123456789abcdef", title="A Study")], NOW)
        store.upsert_entries([_entry(3, id="2611.00003", title="A Study")], NOW)
        assert {e.id for e in store.entries()} == {"2611.00001", "2611.00002", "2611.00003"}


def test_issues_are_recorded_once_per_slot_and_read_in_bulk(state: Path | str) -> None:
    with Store(state) as store:
        first = [_issue("a@example.org"), _issue("b@example.org")]
        assert store.record_issues(first, "w1:1", NOW + timedelta(minutes=5)) == [i.id for i in first]
        again = [_issue("b@example.org"), _issue("c@example.org")]
        assert store.record_issues(again, "w2:1", NOW) == ["c@example.org@2026112707"]  # b's slot is taken
        assert store.issue("b@example.org@2026112707").claimed_by == "w1:1"  # type: ignore[union-attr]
        heads = store.heads({"a@example.org": SLOT, "z@example.org": SLOT,
                             "b@example.org": SLOT + timedelta(days=1)})
        assert heads["a@example.org"].existing == "pending" and heads["z@example.org"].existing is None
        assert heads["b@example.org"].existing is None and heads["b@example.org"].previous_built_at == NOW
        assert store.delivered_among(["a@example.org", "z@example.org"], ["2611.00001", "x"]) == \
            {"a@example.org": {"2611.00001"}}
        assert store.delivered_ids("a@example.org") == {"2611.00001"}
        assert set(store.last_issues(["a@example.org", "c@example.org"])) == {"a@example.org", "c@example.org"}
        assert store.claims() == {"w1:1": 2, "w2:1": 1}
        assert store.queue(NOW + timedelta(minutes=1)) == {"pending": 3, "due": 3, "claimed": 3, "lease_expired": 1,
                                                          "oldest_slot_utc": SLOT.isoformat()}
        assert [r.subscriber for r in store.pending_issues(NOW)] == ["a@example.org", "b@example.org",
                                                                    "c@example.org"]


def test_outcomes_sent_failed_retry_and_pause(state: Path | str) -> None:
    with Store(state) as store:
        store.record_issues([_issue(e) for e in ("a@x.org", "b@x.org", "c@x.org")], "me:1", NOW + timedelta(hours=1))
        paused = store.record_results([
            Result("a@x.org@2026112707", "a@x.org", "sent", possible_duplicate=True),
            Result("b@x.org@2026112707", "b@x.org", "failed", "550 no such user", 550),
            Result("c@x.org@2026112707", "c@x.org", "pending", "421 later", 421, NOW + timedelta(minutes=2)),
        ], NOW, "me:1", pause_after=1)
        assert paused == ["b@x.org"]
        a, b, c = (store.issue(f"{e}@2026112707") for e in ("a@x.org", "b@x.org", "c@x.org"))
        assert a and a.status == "sent" and a.message is None and a.possible_duplicate and a.claimed_by is None
        assert b and b.status == "failed" and b.last_code == 550 and b.claimed_by is None
        assert c and c.status == "pending" and c.claimed_by == "me:1" and c.attempts == 1
        assert c.message == b"From: x\r\n\r\nbody\r\n"
        assert store.states(["b@x.org"])["b@x.org"].paused_reason == "paused after 1 permanent delivery failures"
        assert store.pending_issues(NOW) == [] and len(store.pending_issues(NOW + timedelta(minutes=3))) == 1
        assert b.message is None  # never sent again: its bytes are gone; the pending one keeps them
        assert store.count("issue_messages") == 1
        store.expire([(c.id, "too late")])
        expired = store.issue(c.id)
        assert expired is not None and expired.status == "expired" and expired.message is None
        assert store.count("issue_messages") == 0


def test_claims_leases_and_takeover(state: Path | str) -> None:
    with Store(state) as store:
        store.record_issues([_issue(f"u{i}@x.org") for i in range(6)], "other-host:7", NOW + timedelta(minutes=1))
        never = lambda holder, until: False  # noqa: E731
        assert store.claim_pending(NOW, "me:1", NOW + timedelta(minutes=5), 10, never) == []
        # the holder's lease ran out: its claims may be taken, a page at a time
        rule = lambda holder, until: stealable(holder, until, NOW + timedelta(minutes=2))  # noqa: E731
        page = store.claim_pending(NOW, "me:1", NOW + timedelta(minutes=5), 4, rule)
        assert [r.subscriber for r in page] == [f"u{i}@x.org" for i in range(4)]
        rest = store.claim_pending(NOW, "me:1", NOW + timedelta(minutes=5), 4, rule, exclude=[r.id for r in page])
        assert [r.subscriber for r in rest] == ["u4@x.org", "u5@x.org"]
        assert store.claims() == {"me:1": 6}
        assert store.holds("me:1", [r.id for r in page] + ["nope"]) == {r.id for r in page}
        assert store.renew_claims("me:1", NOW + timedelta(hours=1)) == 6
        only = store.claim_pending(NOW, "me:1", NOW, 10, never, subscribers=["u5@x.org"])
        assert [r.subscriber for r in only] == ["u5@x.org"]
        store.release_claims("me:1")
        assert store.claims() == {"": 6}


def test_concurrent_claims_never_overlap(state: Path | str) -> None:
    """Four connections claim pages at the same moment: every issue is claimed by exactly one."""
    with Store(state) as store:
        store.record_issues([_issue(f"u{i:03d}@x.org") for i in range(200)], None, None)
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        with Store(state) as mine:
            barrier.wait()
            ids: list[str] = []
            while rows := mine.claim_pending(NOW, name, NOW + timedelta(hours=1), 7, lambda h, u: False,
                                             exclude=ids):
                ids.extend(r.id for r in rows)
            got[name] = ids

    threads = [threading.Thread(target=worker, args=(f"w{i}:1",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in got.values() for i in ids]
    assert len(every) == len(set(every)) == 200


def test_ledger_renews_leases_and_reports_lost_claims(state: Path | str) -> None:
    ticks = [NOW]
    with Store(state) as store:
        ledger = Ledger(store, now=NOW, pause_after=3, owner="me:1", clock=lambda: ticks[0],
                        lease=timedelta(seconds=30))
        new = ledger.record([_issue("a@x.org"), _issue("b@x.org")])
        ticks[0] += timedelta(seconds=20)
        ledger.renew()  # more than a third of the lease went by: renewed
        assert {r.claim_until for r in store.issues("pending")} == {NOW + timedelta(seconds=50)}
        thief = Ledger(store, now=NOW, pause_after=3, owner="thief:2", clock=lambda: NOW + timedelta(seconds=60))
        stolen, _ = thief.claim(1)
        assert [r.subscriber for r in stolen] == ["a@x.org"]
        assert ledger.held(new) == {"b@x.org@2026112707"} and ledger.lost == ["a@x.org@2026112707"]


def test_subscribers_and_their_state(state: Path | str) -> None:
    with Store(state) as store:
        subs = [_sub(f"r{i:04d}@example.org", name="Ünï", keywords=('"a b"', "c*")) for i in range(2500)]
        assert store.add_subscribers(subs, NOW) == 2500
        with pytest.raises(StateError, match="already in the store"):
            store.add_subscribers([_sub("r0001@example.org")], NOW)
        assert store.subscriber_count() == 2500
        assert store.add_subscribers([_sub("r0001@example.org", max_entries=9)], NOW, replace_existing=True) == 1
        assert store.subscriber("r0001@example.org").max_entries == 9  # type: ignore[union-attr]
        pages, after = [], ""
        while page := store.subscribers_page(after, 1000):
            pages.append(len(page))
            after = page[-1].email
        assert pages == [1000, 1000, 500]
        assert store.subscriber("r0002@example.org") == subs[2]
        store.update_subscriber(_sub("r0002@example.org", timezone="Asia/Tokyo"))
        assert store.schedules() == {("0 7 * * *", "UTC"), ("0 7 * * *", "Asia/Tokyo")}
        assert store.known(["r0003@example.org", "zz@example.org"]) == {"r0003@example.org"}
        assert store.remove_subscriber("r0003@example.org") and not store.remove_subscriber("r0003@example.org")
        store.set_unsubscribed("r0004@example.org", NOW)
        store.set_unsubscribed("r0004@example.org", NOW + timedelta(days=1))  # the first time stays
        assert store.states(["r0004@example.org"])["r0004@example.org"].unsubscribed_at == NOW
        store.set_paused("r0005@example.org", "holiday", NOW)
        assert store.unsubscribed() == {"r0004@example.org"}
        assert set(store.states()) == {"r0004@example.org", "r0005@example.org"}
        store.set_paused("r0004@example.org", None, NOW)
        assert store.unsubscribed() == set()


def test_source_cursors(state: Path | str) -> None:
    with Store(state) as store:
        store.record_fetch("hf", NOW, entries=3, etag='"e1"', last_modified="Fri")
        store.record_fetch("hf", NOW + timedelta(hours=1), error="HTTP 500")
        store.record_fetch("hf", NOW + timedelta(hours=2), entries=None)
        row = store.source("hf")
        assert row and row.etag == '"e1"' and row.entries == 3 and row.last_error is None
        assert row.last_ok == NOW + timedelta(hours=2)
        assert [s.name for s in store.sources()] == ["hf"]


def test_a_snapshot_sees_the_state_and_keeps_nothing(state: Path | str) -> None:
    with Store(state) as store:
        store.upsert_entries([_entry(1)], NOW)
    with Store.snapshot(state) as snap:
        assert snap.entry_count() == 1
        snap.upsert_entries([_entry(2)], NOW)
        snap.record_issues([_issue("a@x.org")], "me:1", NOW)
        assert snap.entry_count() == 2 and snap.claims() == {"me:1": 1}
    with Store(state) as store:
        assert store.entry_count() == 1 and store.claims() == {}


def test_a_snapshot_of_nothing_creates_nothing(state: Path | str) -> None:
    with Store.snapshot(state) as snap:
        assert snap.entry_count() == 0
    if is_url(state):
        import psycopg

        with psycopg.connect(str(state)) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'").fetchone() == (0,)
    else:
        assert not Path(state).exists()


def test_outcomes_of_one_group_apply_in_order(state: Path | str) -> None:
    """A 451 then a 250 for the same issue in one commit group: two attempts, sent."""
    with Store(state) as store:
        store.record_issues([_issue("a@x.org")], "me:1", NOW + timedelta(hours=1))
        store.record_results([Result("a@x.org@2026112707", "a@x.org", "pending", "451 later", 451, NOW),
                              Result("a@x.org@2026112707", "a@x.org", "sent")], NOW, "me:1", pause_after=3)
        row = store.issue("a@x.org@2026112707")
        assert row and (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_pending_issues_of_schema_6_are_delivered_with_their_bytes_after_the_upgrade(state: Path | str) -> None:
    """Schema 7 keeps a pending issue's message bytes apart from its row. Issues recorded before the
    upgrade (or by an earlier release still running beside this one) keep theirs in the row: they are
    claimed with them, and once sent or failed no bytes are left in either place."""
    from newsletter.store import schema

    def old(name: str) -> tuple[object, ...]:
        return (f"{name}@example.org@2026112707", f"{name}@example.org", "2026-11-27T07:00:00+00:00",
                "2026-11-27T07:00:00+00:00", "pending", f"<{name}@example.org>",
                f"From: x\r\n\r\n{name}'s digest\r\n".encode(), 0)

    rows = [old("ada"), old("bob")]
    insert = ("INSERT INTO issues (id, subscriber, slot, built_at, status, message_id, message, entry_count) "
              "VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})")
    if isinstance(state, str):
        import psycopg

        with psycopg.connect(state, autocommit=True) as conn:
            for script in (schema.POSTGRES_V2, *(schema.POSTGRES_UPGRADES[v] for v in range(3, 7))):
                for statement in schema.statements(script):
                    conn.execute(statement)  # type: ignore[call-overload]
            conn.execute("INSERT INTO meta VALUES ('schema', '6')")
            for row in rows:
                conn.execute(insert.format("%s"), row)  # type: ignore[call-overload]
    else:
        import sqlite3

        state.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(state)
        db.executescript(schema.SQLITE_V1 + "".join(schema.SQLITE_UPGRADES[v] for v in range(2, 7)))
        db.execute("INSERT INTO meta VALUES ('schema', '6')")
        db.executemany(insert.format("?"), rows)
        db.commit()
        db.close()
    with Store(state) as store:
        assert store.version() == SCHEMA_VERSION
        store.record_issues([_issue("new@example.org")], None, None)  # one recorded by this release
        taken = store.claim_pending(NOW, "me:1", NOW + timedelta(minutes=15), 10, stealable)
        assert {r.id: r.message for r in taken} == {**{r[0]: r[6] for r in rows},
                                                   "new@example.org@2026112707": b"From: x\r\n\r\nbody\r\n"}
        store.record_results([Result(rows[0][0], "ada@example.org", "sent"),  # type: ignore[arg-type]
                              Result(rows[1][0], "bob@example.org", "failed", "550 no such user", 550),  # type: ignore[arg-type]
                              Result("new@example.org@2026112707", "new@example.org", "sent")], NOW, "me:1", 3)
        assert [store.issue(r.id).status for r in taken] == ["sent", "failed", "sent"]  # type: ignore[union-attr]
        assert all(store.issue(r.id).message is None for r in taken)  # type: ignore[union-attr]
        assert store._q("SELECT count(*) FROM issues WHERE message IS NOT NULL").fetchone()[0] == 0
        assert store.count("issue_messages") == 0


def test_pending_bytes_cross_between_dialects_with_db_copy(tmp_path: Path, pg_cluster) -> None:  # noqa: ANN001
    """`db copy` carries a pending issue's message bytes (the table apart from the issues) from SQLite to
    PostgreSQL and back, byte for byte, so the copy delivers it."""
    from newsletter.store.copy import copy_state

    sqlite_state, back = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    url = pg_cluster.database()
    payload = b"From: x\r\n\r\n" + bytes(range(256)) * 40 + b"\r\n"
    with Store(sqlite_state) as store:
        store.record_issues([replace(_issue("ada@example.org"), message=payload)], "me:1", NOW + timedelta(hours=1))
    with Store(sqlite_state) as source, Store(url) as target:
        assert {c.table: c.target for c in copy_state(source, target)}["issue_messages"] == 1
    with Store(url) as source, Store(back) as target:
        copy_state(source, target)
    for where in (url, back):
        with Store(where) as store:
            [row] = store.claim_pending(NOW, "me:2", NOW + timedelta(minutes=15), 10, stealable)
            assert row.message == payload


def test_a_claim_of_more_issues_than_one_query_holds_takes_each_with_its_bytes(state: Path | str) -> None:
    """The bytes of the claimed issues are read in chunks of 500 ids: a claim of 1,200 gets every
    issue's own; the issues' lists (`pending_issues`, `last_issues`) read none."""
    subs = [f"r{i:04d}@example.org" for i in range(1200)]
    with Store(state) as store:
        store.record_issues([replace(_issue(s), message=f"From: x\r\n\r\n{s}\r\n".encode()) for s in subs], None, None)
        taken = store.claim_pending(NOW, "me:1", NOW + timedelta(minutes=15), 1200, stealable)
        assert len(taken) == 1200
        assert all(r.message == f"From: x\r\n\r\n{r.subscriber}\r\n".encode() for r in taken)
        assert all(r.message is None for r in store.pending_issues(NOW))
        assert all(r.message is None for r in store.last_issues(subs[:3]).values())
