"""The state store's interface and the queries both dialects share. The SQL here is the common
subset of SQLite (>= 3.24) and PostgreSQL: `?` placeholders (translated for psycopg), upserts with
`ON CONFLICT`, text timestamps. What differs lives in sqlite.py and postgres.py: connecting,
transactions, schema creation and upgrades, snapshots, and claiming (PostgreSQL claims with
`SELECT ... FOR UPDATE SKIP LOCKED`).

`Store(location)` opens the right one: a path is a SQLite file, a `postgresql://` URL a database.
Here: opening, entries, sending's reads of the ledger and its transitions, sources. The reads of the
ledger's history that `explain`, replays and `status` make are in history.py; subscriber state and
store-held subscribers in people.py; what a dialect must provide to all of them in queries.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter.entries import merge, same_content, title_key, title_may_merge
from newsletter.errors import StateError
from newsletter.models import Entry
from newsletter.store import rows as R
from newsletter.store.history import History
from newsletter.store.people import People
from newsletter.store.rows import ISSUE_COLUMNS, Head, IssueRow, NewIssue, Result, SourceRow, chunks, marks, upsert
from newsletter.store.schema import SCHEMA_VERSION, TABLES

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


_ENTRY_UPSERT = upsert("entries", "id")


class Store(History, People):
    """One open state: a SQLite file or a PostgreSQL database. Use as a context manager or call close().
    Its reads of the ledger's history are in history.py, the subscribers' rows in people.py."""

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

    # --- what each dialect provides (besides queries.py's) ----------------------------------------

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
        """This subscriber's latest issue (before `before`), without its message bytes."""
        sql, args = f"SELECT {R.LEAN_COLUMNS} FROM issues WHERE subscriber=?", [subscriber]
        if before is not None:
            sql += " AND slot < ?"
            args.append(R.ts(before) or "")
        row = self._q(sql + " ORDER BY slot DESC LIMIT 1", args).fetchone()
        return R.issue(row) if row else None

    def last_issues(self, subscribers: Sequence[str]) -> dict[str, IssueRow]:
        """The latest issue of each of these subscribers, in bulk, without their message bytes."""
        out: dict[str, IssueRow] = {}
        for chunk in chunks(subscribers):
            rows = self._q(
                f"SELECT {R.LEAN_COLUMNS} FROM issues WHERE subscriber IN ({marks(len(chunk))}) "
                "AND slot = (SELECT max(slot) FROM issues j WHERE j.subscriber = issues.subscriber)", list(chunk))
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

    def delivered_ids(self, subscriber: str) -> set[str]:
        """Entries already in an issue for this subscriber that went out or is going out."""
        rows = self._q(
            "SELECT ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
            "WHERE ie.subscriber=? AND i.status IN ('pending', 'sent')", (subscriber,))
        return {r[0] for r in rows}

    def pending_issues(self, now: datetime, subscriber: str | None = None) -> list[IssueRow]:
        """The pending issues due for an attempt, without their message bytes (`messages` reads those)."""
        sql = (f"SELECT {R.LEAN_COLUMNS} FROM issues WHERE status='pending' "
               "AND (next_attempt IS NULL OR next_attempt <= ?)")
        args: list[object] = [R.ts(now)]
        if subscriber:
            sql += " AND subscriber=?"
            args.append(subscriber)
        return [R.issue(r) for r in self._q(sql + " ORDER BY slot, subscriber", args)]

    def messages(self, issue_ids: Sequence[str]) -> dict[str, bytes]:
        """The message bytes of these issues (those that have them: pending ones)."""
        out: dict[str, bytes] = {}
        for chunk in chunks(list(issue_ids)):
            rows = self._q(f"SELECT id, {R.MESSAGE} FROM issues WHERE id IN ({marks(len(chunk))})", list(chunk))
            out.update((i, bytes(m)) for i, m in rows if m is not None)
        return out

    def claim_leases(self, owner: str) -> dict[str, datetime]:
        """Per process other than `owner` holding pending issues: its earliest lease end."""
        rows = self._q("SELECT claimed_by, MIN(claim_until) FROM issues WHERE status='pending' AND claimed_by "
                       "IS NOT NULL AND claimed_by <> ? AND claim_until IS NOT NULL GROUP BY claimed_by", (owner,))
        return {holder: R.dt(until) for holder, until in rows if until}  # type: ignore[misc]

    # --- issues: writes (the ledger's transitions; policy lives in newsletter/ledger.py) ---------

    def record_issues(self, issues: Sequence[NewIssue], owner: str | None, claim_until: datetime | None) -> list[str]:
        """Commit built issues in one transaction, pending ones claimed by `owner`. Returns the ids
        that were new (a slot already taken by another process is left as it is). Rows are written
        in (subscriber, slot) order so that two workers recording the same batch never deadlock."""
        added: list[str] = []
        entries: list[tuple[str, str, str, int]] = []
        messages: list[tuple[str, bytes]] = []
        with self.transaction():
            for n in sorted(issues, key=lambda n: (n.subscriber, n.slot)):
                claimed = n.status == "pending" and owner is not None
                cur = self._q(
                    "INSERT INTO issues (id, subscriber, slot, built_at, status, subject, message_id, "
                    "entry_count, last_error, claimed_by, claim_until, expires_at, size, dropped) "
                    f"VALUES ({marks(14)}) ON CONFLICT DO NOTHING",
                    (n.id, n.subscriber, R.ts(n.slot), R.ts(n.built_at), n.status, n.subject, n.message_id,
                     len(n.entry_ids), n.note, owner if claimed else None,
                     R.ts(claim_until) if claimed else None, R.ts(n.expires_at),
                     len(n.message) if n.message is not None else None, n.dropped))
                if cur.rowcount == 0:
                    continue
                added.append(n.id)
                entries.extend([(n.id, n.subscriber, e, k) for k, e in enumerate(n.entry_ids)])
                if n.message is not None:
                    messages.append((n.id, n.message))
            if entries:  # each paper with its place in the issue (the archive shows them in that order)
                self._many("INSERT INTO issue_entries (issue_id, subscriber, entry_id, position) VALUES (?,?,?,?) "
                           "ON CONFLICT DO NOTHING", entries)
            if messages:  # apart from the issue's row: deleted once sent, they leave nothing behind
                # (bytes already there under this id belong to no issue: a new issue's are these)
                self._many("INSERT INTO issue_messages (issue_id, message) VALUES (?,?) ON CONFLICT (issue_id) "
                           "DO UPDATE SET message=excluded.message", messages)
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
        """Commit a group of delivery outcomes in one transaction. A sent or failed issue drops its
        message bytes. Permanent failures count towards pausing the subscriber; returns who got paused."""
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
                    "claim_until=CASE WHEN ?=1 THEN NULL ELSE claim_until END, "
                    "message=CASE WHEN ?=1 THEN NULL ELSE message END "
                    "WHERE id=? AND status='pending'",
                    (r.status, r.error, r.code, R.ts(r.next_attempt), int(r.possible_duplicate), failed, failed,
                     failed, r.issue_id))
                if failed:
                    self._drop_messages([r.issue_id])
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
        self._drop_messages([r.issue_id for r in sent])
        self._many("UPDATE subscriber_state SET hard_failures=0 WHERE email=? AND hard_failures>0",
                   [(r.recipient,) for r in sent])

    def expire(self, issue_ids: Sequence[tuple[str, str]]) -> None:
        """Mark pending issues expired, each with its reason."""
        with self.transaction():
            self._many("UPDATE issues SET status='expired', last_error=?, message=NULL, claimed_by=NULL, "
                       "claim_until=NULL WHERE id=? AND status='pending'", [(why, i) for i, why in issue_ids])
            self._drop_messages([i for i, _ in issue_ids])

    def _drop_messages(self, issue_ids: Sequence[str]) -> None:
        """An issue keeps its message bytes only while it is pending: those of these issues that are no
        longer pending (sent, failed, expired: none is ever sent again) are deleted (the transitions
        also empty `issues.message`, where issues recorded before schema 7 keep theirs)."""
        self._many("DELETE FROM issue_messages WHERE issue_id=? AND issue_id IN (SELECT id FROM issues WHERE id=? "
                   "AND status <> 'pending')", [(i, i) for i in issue_ids])

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
