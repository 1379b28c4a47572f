"""The state store's interface and the queries both dialects share. The SQL here is the common
subset of SQLite (>= 3.24) and PostgreSQL: `?` placeholders (translated for psycopg), upserts with
`ON CONFLICT`, text timestamps. What differs lives in sqlite.py and postgres.py: connecting,
transactions, schema creation and upgrades, snapshots, and claiming (PostgreSQL claims with
`SELECT ... FOR UPDATE SKIP LOCKED`).

`Store(location)` opens the right one: a path is a SQLite file, a `postgresql://` URL a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from newsletter.entries import merge, same_content, title_key, title_may_merge
from newsletter.errors import StateError
from newsletter.models import Entry, Subscriber
from newsletter.store import rows as R
from newsletter.store.rows import ISSUE_COLUMNS, Head, IssueRow, NewIssue, Result, SourceRow, StateRow, chunks, marks
from newsletter.store.schema import SCHEMA_VERSION, TABLES

URL_SCHEMES = ("postgresql://", "postgres://")


_HEADS = "i.id, i.subscriber, i.slot, i.built_at, i.status, i.entry_count, i.last_error, i.sent_at, i.dropped"


_LEAN = ISSUE_COLUMNS.replace(" message,", " NULL,")  # an issue row without its message bytes
assert _LEAN != ISSUE_COLUMNS


def _head(r: Sequence[Any]) -> IssueRow:
    return IssueRow(r[0], r[1], R.dt(r[2]), R.dt(r[3]), r[4], None, None, None, r[5], 0, r[6], None, None,  # type: ignore[arg-type]
                    R.dt(r[7]), False, dropped=r[8] or 0)


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def _upsert(table: str, key: str) -> str:
    cols = TABLES[table]
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c != key)
    return f"INSERT INTO {table} VALUES ({marks(len(cols))}) ON CONFLICT ({key}) DO UPDATE SET {updates}"


_ENTRY_UPSERT = _upsert("entries", "id")
_SUBSCRIBER_UPSERT = _upsert("subscribers", "email")


class Store:
    """One open state: a SQLite file or a PostgreSQL database. Use as a context manager or call close()."""

    path: Path | str  # the file, or the URL without its password: for messages
    integrity_errors: tuple[type[Exception], ...] = ()
    upgraded: tuple[int, int] = (0, 0)  # (from, to) when this store was opened

    def __new__(cls, location: Path | str) -> Store:  # noqa: D102
        if cls is Store:
            if is_url(location):
                from newsletter.store.postgres import PostgresStore

                return super().__new__(PostgresStore)
            from newsletter.store.sqlite import SqliteStore

            return super().__new__(SqliteStore)
        return super().__new__(cls)

    @classmethod
    def snapshot(cls, location: Path | str) -> Store:
        """A copy of the state that writes never leave (previews, dry runs, read-only commands)."""
        if is_url(location):
            from newsletter.store.postgres import PostgresStore

            return PostgresStore.snapshot(location)
        from newsletter.store.sqlite import SqliteStore

        return SqliteStore.snapshot(location)

    @classmethod
    def reader(cls, location: Path | str) -> Store:
        """The state as it is now, for commands that only read: consistent while open and never
        copied (a SQLite file is read in place, PostgreSQL in one repeatable-read transaction)."""
        if is_url(location):
            from newsletter.store.postgres import PostgresStore

            return PostgresStore.snapshot(location)
        from newsletter.store.sqlite import SqliteStore

        return SqliteStore.reader(location)

    def reopen(self) -> Store:
        """Another connection to the same state (for another thread)."""
        return Store(self.path)

    # --- what each dialect provides ------------------------------------------------------------

    def _q(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Execute one statement (with `?` placeholders); returns a cursor (iterable, fetchone, rowcount)."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def version(self) -> int:
        """The schema version of the state; 0 for an empty one."""
        raise NotImplementedError

    def _version_of(self, tables: set[str], unrelated: str) -> int:
        """The version recorded in `meta`, given the tables found; refuses a state that is not ours."""
        if not tables:
            return 0
        if "meta" not in tables:
            raise StateError(f"{self.path}: {unrelated}")
        row = self._q("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise StateError(f"{self.path}: the state has no valid schema version (meta.schema = "
                             f"{row[0] if row else 'missing'!r}); restore it from a backup")
        current = int(row[0])
        if current > SCHEMA_VERSION:
            raise StateError(f"{self.path}: written by a newer newsletter (schema {current}, this one "
                             f"knows {SCHEMA_VERSION}); upgrade newsletter")
        return current

    def upgrade(self) -> tuple[int, int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def claim_pending(self, now: datetime, owner: str, until: datetime, limit: int,
                      stealable: Callable[[str, datetime], bool], *, subscribers: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> list[IssueRow]:
        """Claim up to `limit` pending issues due for an attempt, in one transaction: unclaimed ones,
        ones already ours, and ones whose holder `stealable` gives up (lease over, process gone)."""
        raise NotImplementedError

    def _serialise(self, what: str) -> None:
        """Inside a transaction: wait for any other writer of `what` to finish first (SQLite's
        writers are serial already; PostgreSQL takes an advisory lock until the transaction ends)."""

    def bulk_insert(self, table: str, rows: Iterable[Sequence[Any]], columns: Sequence[str] | None = None) -> None:
        """Insert rows with these columns (all of TABLES[table]'s by default), inside the caller's
        transaction (db copy)."""
        columns = TABLES[table] if columns is None else columns
        self._many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(len(columns))})", rows)

    def rows(self, table: str, columns: Sequence[str] | None = None) -> Iterator[tuple[Any, ...]]:
        """Every row of a table, these columns (all of TABLES[table]'s by default) (db copy)."""
        yield from self._q(f"SELECT {', '.join(TABLES[table] if columns is None else columns)} FROM {table}")

    def count(self, table: str) -> int:
        return int(self._q(f"SELECT count(*) FROM {table}").fetchone()[0])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- entries -----------------------------------------------------------------------------

    def upsert_entries(self, entries: Iterable[Entry], now: datetime) -> dict[str, int]:
        """Insert or merge entries; returns counts of new / updated / unchanged."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        with self.transaction():
            self._serialise("entries")  # two ingests at once (two services) merge, never collide
            for entry in entries:
                old = self._find(entry)
                if old is None:
                    self._write(replace(entry, first_seen=now, updated=now), insert=True)
                    counts["new"] += 1
                    continue
                merged = merge(old, entry)
                if same_content(merged, old) and merged.id == old.id:
                    counts["unchanged"] += 1
                    continue
                if merged.id != old.id:
                    self._q("DELETE FROM entries WHERE id=?", (old.id,))
                    self._q("UPDATE issue_entries SET entry_id=? WHERE entry_id=?", (merged.id, old.id))
                self._write(replace(merged, updated=now), insert=merged.id != old.id)
                counts["updated"] += 1
        return counts

    def _find(self, entry: Entry) -> Entry | None:
        row = self._q("SELECT * FROM entries WHERE id=?", (entry.id,)).fetchone()
        if row is None:
            # The same paper first seen without an arXiv id (or now seen without one).
            for candidate in self._q("SELECT * FROM entries WHERE title_key=?", (title_key(entry.title),)):
                if title_may_merge(candidate[0], entry.id):
                    row = candidate
                    break
        return R.entry(row) if row else None

    def _write(self, e: Entry, insert: bool) -> None:
        values = R.entry_values(e, title_key(e.title))
        self._q(f"INSERT INTO entries VALUES ({marks(14)})" if insert else _ENTRY_UPSERT, values)

    def entries(self, since: datetime | None = None, until: datetime | None = None) -> list[Entry]:
        """Entries first seen in (since, until], oldest first."""
        sql, args = "SELECT * FROM entries WHERE 1=1", []
        if since is not None:
            sql += " AND first_seen > ?"
            args.append(R.ts(since))
        if until is not None:
            sql += " AND first_seen <= ?"
            args.append(R.ts(until))
        sql += " ORDER BY first_seen, id"
        return [R.entry(r) for r in self._q(sql, args)]

    def entries_by_id(self, ids: Sequence[str]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for chunk in chunks(list(ids)):
            for r in self._q(f"SELECT * FROM entries WHERE id IN ({marks(len(chunk))})", list(chunk)):
                out[r[0]] = R.entry(r)
        return out

    def entry_titles(self) -> list[tuple[str, str]]:
        """(id, title) of every stored paper, oldest first (finding a paper by words of its title)."""
        return [(r[0], r[1]) for r in self._q("SELECT id, title FROM entries ORDER BY first_seen, id")]

    def entry_count(self) -> int:
        return self.count("entries")

    # --- issues: reads -------------------------------------------------------------------------

    def issue(self, issue_id: str) -> IssueRow | None:
        row = self._q(f"SELECT {ISSUE_COLUMNS} FROM issues WHERE id=?", (issue_id,)).fetchone()
        return R.issue(row) if row else None

    def last_issue(self, subscriber: str, before: datetime | None = None) -> IssueRow | None:
        sql, args = f"SELECT {ISSUE_COLUMNS} FROM issues WHERE subscriber=?", [subscriber]
        if before is not None:
            sql += " AND slot < ?"
            args.append(R.ts(before) or "")
        row = self._q(sql + " ORDER BY slot DESC LIMIT 1", args).fetchone()
        return R.issue(row) if row else None

    def last_issues(self, subscribers: Sequence[str]) -> dict[str, IssueRow]:
        """The latest issue of each of these subscribers, in bulk."""
        out: dict[str, IssueRow] = {}
        for chunk in chunks(subscribers):
            rows = self._q(
                f"SELECT {ISSUE_COLUMNS} FROM issues i WHERE subscriber IN ({marks(len(chunk))}) "
                "AND slot = (SELECT max(slot) FROM issues j WHERE j.subscriber = i.subscriber)", list(chunk))
            out.update((r[1], R.issue(r)) for r in rows)
        return out

    def heads(self, slots: dict[str, datetime]) -> dict[str, Head]:
        """For each subscriber and slot: the status of that slot's issue, and when the previous
        issue was built. Two bulk reads per chunk of subscribers."""
        out: dict[str, Head] = {}
        emails = list(slots)
        for chunk in chunks(emails):
            rows = self._q(f"SELECT subscriber, slot, status, built_at FROM issues "
                           f"WHERE subscriber IN ({marks(len(chunk))})", list(chunk)).fetchall()
            existing: dict[str, str] = {}
            previous: dict[str, tuple[str, str]] = {}
            for email, slot, status, built in rows:
                mine = R.ts(slots[email])
                if slot == mine:
                    existing[email] = status
                elif mine is not None and slot < mine and (email not in previous or slot > previous[email][0]):
                    previous[email] = (slot, built)
            for email in chunk:
                prev = previous.get(email)
                out[email] = Head(existing.get(email), R.dt(prev[1]) if prev else None)
        return out

    def delivered_among(self, subscribers: Sequence[str], entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Which of these entries each subscriber already has in a sent or pending issue."""
        out: dict[str, set[str]] = {}
        if not subscribers or not entry_ids:
            return out
        wanted = set(entry_ids)
        for chunk in chunks(subscribers):
            rows = self._q(
                "SELECT ie.subscriber, ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
                f"WHERE ie.subscriber IN ({marks(len(chunk))}) AND i.status IN ('pending', 'sent')", list(chunk))
            for email, entry_id in rows:
                if entry_id in wanted:
                    out.setdefault(email, set()).add(entry_id)
        return out

    def issue_heads_of(self, subscribers: Sequence[str]) -> dict[str, list[IssueRow]]:
        """Every issue of these subscribers, oldest slot first, without message, subject and retry
        details (`explain` reads tens of thousands)."""
        out: dict[str, list[IssueRow]] = {}
        for chunk in chunks(list(subscribers)):
            for r in self._q(f"SELECT {_HEADS} FROM issues i WHERE i.subscriber IN ({marks(len(chunk))}) "
                             "ORDER BY i.slot", list(chunk)):
                row = _head(r)
                out.setdefault(row.subscriber, []).append(row)
        return out

    def issues_around(self, subscribers: Sequence[str], when: datetime
                      ) -> dict[str, tuple[datetime | None, IssueRow | None]]:
        """Per subscriber with issues, what decides where a paper first seen at `when` could go: when
        the last issue before `when` was built (it opens the next window) and the next issue (as an
        `issue_heads_of` row; the first issue when none was built before). Two index seeks on
        (subscriber, slot) per subscriber, one statement per chunk: an issue is never built before
        its slot, and a subscriber's issues are built in slot order."""
        at = R.ts(when)
        out: dict[str, tuple[datetime | None, IssueRow | None]] = {}
        for chunk in chunks(list(subscribers)):
            rows = self._q(
                f"WITH s(email) AS (VALUES {', '.join('(?)' for _ in chunk)}), "
                "p AS (SELECT email, (SELECT j.slot FROM issues j WHERE j.subscriber = s.email AND j.slot < ? "
                "AND j.built_at < ? ORDER BY j.slot DESC LIMIT 1) AS ps FROM s) "
                f"SELECT p.email, (SELECT b.built_at FROM issues b WHERE b.subscriber = p.email AND b.slot = p.ps), "
                f"{_HEADS} FROM p LEFT JOIN issues i ON i.subscriber = p.email AND i.slot = (SELECT k.slot FROM "
                "issues k WHERE k.subscriber = p.email AND k.slot > coalesce(p.ps, '') ORDER BY k.slot LIMIT 1)",
                [*chunk, at, at])
            for r in rows:
                if r[1] is not None or r[2] is not None:
                    out[r[0]] = (R.dt(r[1]), _head(r[2:]) if r[2] is not None else None)
        return out

    def issue_heads(self, issue_ids: Sequence[str]) -> list[IssueRow]:
        """These issues as `issue_heads_of` rows (unknown ids are left out)."""
        out: list[IssueRow] = []
        for chunk in chunks(list(issue_ids)):
            out.extend(map(_head, self._q(f"SELECT {_HEADS} FROM issues i WHERE i.id IN ({marks(len(chunk))})",
                                          list(chunk))))
        return out

    def issues_of(self, subscribers: Sequence[str]) -> dict[str, list[IssueRow]]:
        """Every issue of these subscribers, oldest slot first, in bulk (`explain`)."""
        out: dict[str, list[IssueRow]] = {}
        for chunk in chunks(list(subscribers)):
            for r in self._q(f"SELECT {ISSUE_COLUMNS} FROM issues WHERE subscriber IN ({marks(len(chunk))}) "
                             "ORDER BY slot", list(chunk)):
                row = R.issue(r)
                out.setdefault(row.subscriber, []).append(row)
        return out

    def carriers(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Per issue that carried any of these papers, which of them (for every subscriber at once)."""
        out: dict[str, set[str]] = {}
        for ids in chunks(list(entry_ids)):
            for issue_id, entry_id in self._q(f"SELECT issue_id, entry_id FROM issue_entries WHERE entry_id IN "
                                              f"({marks(len(ids))})", list(ids)):
                out.setdefault(issue_id, set()).add(entry_id)
        return out

    def issue_entry_ids(self, issue_ids: Sequence[str]) -> dict[str, set[str]]:
        """The papers each of these issues carried (those its email showed), in bulk."""
        out: dict[str, set[str]] = {}
        for chunk in chunks(list(issue_ids)):
            for issue_id, entry_id in self._q("SELECT issue_id, entry_id FROM issue_entries WHERE issue_id IN "
                                              f"({marks(len(chunk))})", list(chunk)):
                out.setdefault(issue_id, set()).add(entry_id)
        return out

    def delivered_ids(self, subscriber: str) -> set[str]:
        """Entries already in an issue for this subscriber that went out or is going out."""
        rows = self._q(
            "SELECT ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
            "WHERE ie.subscriber=? AND i.status IN ('pending', 'sent')", (subscriber,))
        return {r[0] for r in rows}

    def pending_issues(self, now: datetime, subscriber: str | None = None) -> list[IssueRow]:
        sql = (f"SELECT {ISSUE_COLUMNS} FROM issues WHERE status='pending' "
               "AND (next_attempt IS NULL OR next_attempt <= ?)")
        args: list[object] = [R.ts(now)]
        if subscriber:
            sql += " AND subscriber=?"
            args.append(subscriber)
        return [R.issue(r) for r in self._q(sql + " ORDER BY slot, subscriber", args)]

    def claim_leases(self, owner: str) -> dict[str, datetime]:
        """Per process other than `owner` holding pending issues: its earliest lease end."""
        rows = self._q("SELECT claimed_by, MIN(claim_until) FROM issues WHERE status='pending' AND claimed_by "
                       "IS NOT NULL AND claimed_by <> ? AND claim_until IS NOT NULL GROUP BY claimed_by", (owner,))
        return {holder: R.dt(until) for holder, until in rows if until}  # type: ignore[misc]

    def issues(self, status: str | None = None) -> list[IssueRow]:
        """The issues (with this status), without their message bytes (`status` lists every pending one)."""
        sql, args = f"SELECT {_LEAN} FROM issues", []
        if status:
            sql += " WHERE status=?"
            args.append(status)
        return [R.issue(r) for r in self._q(sql + " ORDER BY slot, subscriber", args)]

    def mean_size(self, status: str = "sent") -> float:
        """The mean message size in bytes of the issues with this status (0 when none)."""
        row = self._q("SELECT avg(size) FROM issues WHERE status=? AND size IS NOT NULL", (status,)).fetchone()
        return float(row[0] or 0)

    def worker_leases(self) -> dict[str, tuple[int, datetime | None]]:
        """Per worker holding pending issues: how many, and its latest lease end."""
        rows = self._q("SELECT claimed_by, count(*), max(claim_until) FROM issues WHERE status='pending' "
                       "AND claimed_by IS NOT NULL GROUP BY claimed_by")
        return {owner: (int(n), R.dt(until)) for owner, n, until in rows}

    def claims(self) -> dict[str, int]:
        """Pending issues per claiming worker (unclaimed under '')."""
        rows = self._q("SELECT coalesce(claimed_by, ''), count(*) FROM issues WHERE status='pending' GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    def queue(self, now: datetime) -> dict[str, Any]:
        """The delivery queue at `now`: pending issues, how many are due for an attempt, how many
        are claimed (and whose lease ran out), and the oldest pending slot."""
        row = self._q(
            "SELECT count(*), "
            "coalesce(sum(CASE WHEN next_attempt IS NULL OR next_attempt <= ? THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN claimed_by IS NOT NULL THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN claimed_by IS NOT NULL AND claim_until < ? THEN 1 ELSE 0 END), 0), "
            "min(slot) FROM issues WHERE status='pending'", (R.ts(now), R.ts(now))).fetchone()
        return {"pending": int(row[0]), "due": int(row[1]), "claimed": int(row[2]), "lease_expired": int(row[3]),
                "oldest_slot_utc": row[4]}

    # --- issues: writes (the ledger's transitions; policy lives in newsletter/ledger.py) ---------

    def record_issues(self, issues: Sequence[NewIssue], owner: str | None, claim_until: datetime | None) -> list[str]:
        """Commit built issues in one transaction, pending ones claimed by `owner`. Returns the ids
        that were new (a slot already taken by another process is left as it is). Rows are written
        in (subscriber, slot) order so that two workers recording the same batch never deadlock."""
        added = []
        with self.transaction():
            for n in sorted(issues, key=lambda n: (n.subscriber, n.slot)):
                claimed = n.status == "pending" and owner is not None
                cur = self._q(
                    "INSERT INTO issues (id, subscriber, slot, built_at, status, subject, message_id, "
                    "message, entry_count, last_error, claimed_by, claim_until, expires_at, size, dropped) "
                    f"VALUES ({marks(15)}) ON CONFLICT DO NOTHING",
                    (n.id, n.subscriber, R.ts(n.slot), R.ts(n.built_at), n.status, n.subject, n.message_id,
                     n.message, len(n.entry_ids), n.note, owner if claimed else None,
                     R.ts(claim_until) if claimed else None, R.ts(n.expires_at),
                     len(n.message) if n.message is not None else None, n.dropped))
                if cur.rowcount == 0:
                    continue
                added.append(n.id)
                self._many("INSERT INTO issue_entries VALUES (?,?,?) ON CONFLICT DO NOTHING",
                           [(n.id, n.subscriber, e) for e in n.entry_ids])
        order = {n.id: i for i, n in enumerate(issues)}
        return sorted(added, key=order.__getitem__)

    def record_issue(self, issue_id: str, subscriber: str, slot: datetime, built_at: datetime,
                     status: str, entry_ids: Iterable[str], subject: str | None = None,
                     message_id: str | None = None, message: bytes | None = None,
                     note: str | None = None) -> bool:
        """Commit one issue, unclaimed. False if that slot was already taken."""
        new = NewIssue(issue_id, subscriber, slot, built_at, status, tuple(entry_ids), subject, message_id,
                       message, note)
        return bool(self.record_issues([new], None, None))

    def renew_claims(self, owner: str, until: datetime) -> int:
        """Extend the lease of every pending issue this owner holds."""
        with self.transaction():
            cur = self._q("UPDATE issues SET claim_until=? WHERE claimed_by=? AND status='pending'",
                          (R.ts(until), owner))
        return int(cur.rowcount)

    def holds(self, owner: str, issue_ids: Sequence[str]) -> set[str]:
        """Which of these issues are still pending and claimed by `owner`."""
        out: set[str] = set()
        for chunk in chunks(list(issue_ids)):
            rows = self._q(f"SELECT id FROM issues WHERE id IN ({marks(len(chunk))}) "
                           "AND status='pending' AND claimed_by=?", [*chunk, owner])
            out.update(r[0] for r in rows)
        return out

    def release_claims(self, owner: str) -> None:
        with self.transaction():
            self._q("UPDATE issues SET claimed_by=NULL, claim_until=NULL WHERE claimed_by=? AND status='pending'",
                    (owner,))

    def record_results(self, results: Sequence[Result], now: datetime, owner: str, pause_after: int) -> list[str]:
        """Commit a group of delivery outcomes in one transaction. A sent issue drops its message
        bytes. Permanent failures count towards pausing the subscriber; returns who got paused."""
        paused: list[str] = []
        sent: list[Result] = []  # consecutive successes go in one statement batch; order is kept
        with self.transaction():
            for r in [*results, None]:
                if r is not None and r.status == "sent":
                    sent.append(r)
                    continue
                if sent:
                    self._record_sent(sent, now)
                    sent = []
                if r is None:
                    break
                # A transient failure keeps its claim until the run releases it (in-run retries).
                failed = int(r.status == "failed")
                self._q(
                    "UPDATE issues SET status=?, attempts=attempts+1, last_error=?, last_code=?, next_attempt=?, "
                    "possible_duplicate=CASE WHEN ?=1 THEN 1 ELSE possible_duplicate END, "
                    "claimed_by=CASE WHEN ?=1 THEN NULL ELSE claimed_by END, "
                    "claim_until=CASE WHEN ?=1 THEN NULL ELSE claim_until END "
                    "WHERE id=? AND status='pending'",
                    (r.status, r.error, r.code, R.ts(r.next_attempt), int(r.possible_duplicate), failed, failed,
                     r.issue_id))
                if failed:
                    self._q("INSERT INTO subscriber_state (email, hard_failures) VALUES (?, 1) ON CONFLICT (email) "
                            "DO UPDATE SET hard_failures=subscriber_state.hard_failures+1", (r.recipient,))
                    n = self._q("SELECT hard_failures FROM subscriber_state WHERE email=?",
                                (r.recipient,)).fetchone()[0]
                    if n >= pause_after:
                        self._q("UPDATE subscriber_state SET paused_reason=?, paused_at=coalesce(paused_at, ?), "
                                "paused_until=NULL WHERE email=? AND paused_reason IS NULL",
                                (f"paused after {n} permanent delivery failures", R.ts(now), r.recipient))
                        paused.append(r.recipient)
        return paused

    def _record_sent(self, sent: Sequence[Result], now: datetime) -> None:
        self._many("UPDATE issues SET status='sent', sent_at=?, attempts=attempts+1, last_error=NULL, "
                   "message=NULL, claimed_by=NULL, claim_until=NULL, "
                   "possible_duplicate=CASE WHEN ?=1 THEN 1 ELSE possible_duplicate END "
                   "WHERE id=? AND status='pending'",
                   [(R.ts(now), int(r.possible_duplicate), r.issue_id) for r in sent])
        self._many("UPDATE subscriber_state SET hard_failures=0 WHERE email=? AND hard_failures>0",
                   [(r.recipient,) for r in sent])

    def expire(self, issue_ids: Sequence[tuple[str, str]]) -> None:
        """Mark pending issues expired, each with its reason."""
        with self.transaction():
            self._many("UPDATE issues SET status='expired', last_error=?, claimed_by=NULL, claim_until=NULL "
                       "WHERE id=? AND status='pending'", [(why, i) for i, why in issue_ids])

    # --- subscriber state --------------------------------------------------------------------

    def states(self, emails: Sequence[str] | None = None) -> dict[str, StateRow]:
        """The state rows of these subscribers (all when None), in bulk."""
        cols = "email, unsubscribed_at, hard_failures, paused_reason, paused_at, bounced_at"
        if emails is None:
            return {r[0]: R.state(r) for r in self._q(f"SELECT {cols} FROM subscriber_state")}
        out: dict[str, StateRow] = {}
        for chunk in chunks(list(emails)):
            for r in self._q(f"SELECT {cols} FROM subscriber_state WHERE email IN ({marks(len(chunk))})", list(chunk)):
                out[r[0]] = R.state(r)
        return out

    def set_unsubscribed(self, email: str, now: datetime) -> None:
        """One commit: the subscriber gets nothing from now on."""
        with self.transaction():
            self._q("INSERT INTO subscriber_state (email, unsubscribed_at) VALUES (?, ?) ON CONFLICT (email) "
                    "DO UPDATE SET unsubscribed_at=coalesce(subscriber_state.unsubscribed_at, excluded.unsubscribed_at)",
                    (email, R.ts(now)))

    def set_paused(self, email: str, reason: str | None, now: datetime) -> None:
        """Pause with a reason, or (None) resume: clears pauses, failures and an unsubscribe."""
        with self.transaction():
            if reason is None:
                self._q("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, paused_until=NULL, "
                        "hard_failures=0, unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
            else:  # a pause with no end: any earlier end date goes with the earlier pause
                self._q("INSERT INTO subscriber_state (email, paused_reason, paused_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (email) DO UPDATE SET paused_reason=excluded.paused_reason, "
                        "paused_at=excluded.paused_at, paused_until=NULL", (email, reason, R.ts(now)))

    def unsubscribed(self) -> set[str]:
        return {r[0] for r in self._q("SELECT email FROM subscriber_state WHERE unsubscribed_at IS NOT NULL")}

    # --- store-held subscribers ------------------------------------------------------------------

    def add_subscribers(self, subscribers: Iterable[Subscriber], now: datetime, *, replace_existing: bool = False) -> int:
        """Insert store-held subscribers in one transaction; returns how many were written."""
        sql = _SUBSCRIBER_UPSERT if replace_existing else f"INSERT INTO subscribers VALUES ({marks(len(TABLES['subscribers']))})"
        rows = [R.subscriber_values(s, now) for s in subscribers]
        try:
            with self.transaction():
                self._many(sql, rows)
        except self.integrity_errors as exc:
            raise StateError(f"a subscriber is already in the store ({str(exc).splitlines()[0]})") from None
        return len(rows)

    def update_subscriber(self, subscriber: Subscriber) -> None:
        with self.transaction():
            row = self._q("SELECT added_at FROM subscribers WHERE email=?", (subscriber.email,)).fetchone()
            if row is None:
                raise StateError(f"no subscriber '{subscriber.email}' in the store")
            self._q(_SUBSCRIBER_UPSERT, R.subscriber_values(subscriber, R.dt(row[0]) or datetime.now(timezone.utc)))

    def remove_subscriber(self, email: str) -> bool:
        with self.transaction():
            cur = self._q("DELETE FROM subscribers WHERE email=?", (email,))
        return int(cur.rowcount) == 1

    def subscriber(self, email: str) -> Subscriber | None:
        row = self._q("SELECT * FROM subscribers WHERE email=?", (email,)).fetchone()
        return R.subscriber(row) if row else None

    def subscriber_count(self) -> int:
        return self.count("subscribers")

    def subscribers_page(self, after: str = "", limit: int = 1000) -> list[Subscriber]:
        """Store-held subscribers in address order, `limit` at a time (keyset pagination)."""
        rows = self._q("SELECT * FROM subscribers WHERE email > ? ORDER BY email LIMIT ?", (after, limit))
        return [R.subscriber(r) for r in rows]

    def known(self, emails: Sequence[str]) -> set[str]:
        """Which of these addresses are store-held subscribers."""
        out: set[str] = set()
        for chunk in chunks(list(emails)):
            out.update(r[0] for r in self._q(f"SELECT email FROM subscribers WHERE email IN ({marks(len(chunk))})",
                                             list(chunk)))
        return out

    def schedules(self) -> set[tuple[str, str]]:
        """The distinct (cron, time zone) pairs of store-held subscribers."""
        return {(r[0], r[1]) for r in self._q("SELECT DISTINCT schedule, timezone FROM subscribers")}

    # --- sources -----------------------------------------------------------------------------

    def source(self, name: str) -> SourceRow | None:
        row = self._q("SELECT * FROM sources WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        return SourceRow(row[0], row[1], row[2], R.dt(row[3]), R.dt(row[4]), row[5], row[6])

    def sources(self) -> list[SourceRow]:
        names = [r[0] for r in self._q("SELECT name FROM sources ORDER BY name")]
        return [s for s in map(self.source, names) if s]

    def record_fetch(self, name: str, now: datetime, *, error: str | None = None,
                     entries: int | None = None, etag: str | None = None,
                     last_modified: str | None = None) -> None:
        with self.transaction():
            self._q("INSERT INTO sources (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
            if error:
                self._q("UPDATE sources SET last_fetch=?, last_error=? WHERE name=?", (R.ts(now), error, name))
            else:
                self._q("UPDATE sources SET last_fetch=?, last_ok=?, last_error=NULL, "
                        "entries=coalesce(?, entries), etag=coalesce(?, etag), "
                        "last_modified=coalesce(?, last_modified) WHERE name=?",
                        (R.ts(now), R.ts(now), entries, etag, last_modified, name))
