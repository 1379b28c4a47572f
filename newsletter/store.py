"""The SQLite state store: entries, issues (the delivery ledger), source cursors, store-held
subscribers and every subscriber's state. The only SQL in the project.

Writes are grouped into short transactions; the ledger row of an issue is committed as `pending`
(with the exact message bytes, claimed by the process that built it) before any SMTP transaction
starts, and becomes `sent` only after the server accepted it; its message bytes are dropped then,
so a delivered issue costs a few hundred bytes. `synchronous=FULL` makes each commit durable.
The schema is versioned: `upgrade()` brings an older file up to date and refuses a newer one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path

from newsletter.entries import is_title_id, merge, same_content, title_key
from newsletter.errors import StateError
from newsletter.models import Entry, Links, Subscriber

SCHEMA_VERSION = 2
_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY, title_key TEXT NOT NULL, title TEXT NOT NULL, abstract TEXT NOT NULL,
    authors TEXT NOT NULL, author_count INTEGER, published TEXT, upvotes INTEGER, comments INTEGER,
    organization TEXT, links TEXT NOT NULL, sources TEXT NOT NULL,
    first_seen TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_title_key ON entries(title_key);
CREATE INDEX IF NOT EXISTS entries_first_seen ON entries(first_seen);
CREATE TABLE IF NOT EXISTS issues (
    id TEXT PRIMARY KEY, subscriber TEXT NOT NULL, slot TEXT NOT NULL, built_at TEXT NOT NULL,
    status TEXT NOT NULL, subject TEXT, message_id TEXT, message BLOB, entry_count INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_code INTEGER,
    next_attempt TEXT, sent_at TEXT, possible_duplicate INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT, claim_until TEXT,
    UNIQUE (subscriber, slot));
CREATE INDEX IF NOT EXISTS issues_status ON issues(status);
CREATE TABLE IF NOT EXISTS issue_entries (
    issue_id TEXT NOT NULL, subscriber TEXT NOT NULL, entry_id TEXT NOT NULL,
    PRIMARY KEY (subscriber, entry_id, issue_id));
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, last_fetch TEXT, last_ok TEXT,
    last_error TEXT, entries INTEGER);
CREATE TABLE IF NOT EXISTS subscriber_state (
    email TEXT PRIMARY KEY, unsubscribed_at TEXT, hard_failures INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT);
"""
# Each step upgrades the schema by one version; a file is upgraded in one transaction.
_UPGRADES: dict[int, str] = {
    2: """
CREATE TABLE subscribers (
    email TEXT PRIMARY KEY, name TEXT, keywords TEXT NOT NULL, exclude TEXT NOT NULL,
    schedule TEXT NOT NULL, timezone TEXT NOT NULL, max_entries INTEGER NOT NULL,
    min_upvotes INTEGER NOT NULL, send_empty INTEGER NOT NULL, added_at TEXT NOT NULL);
ALTER TABLE subscriber_state ADD COLUMN paused_at TEXT;
ALTER TABLE subscriber_state ADD COLUMN bounced_at TEXT;
ALTER TABLE issues ADD COLUMN expires_at TEXT;
ALTER TABLE issues ADD COLUMN size INTEGER;
ALTER TABLE issues ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX issues_pending ON issues(status, next_attempt) WHERE status = 'pending';
""",
}

# Issue statuses: pending (message committed, not yet accepted), sent, failed (permanent),
# empty (nothing to send for that slot), expired (too old to send).
OPEN_STATUSES = ("pending", "sent")
_ISSUE_COLUMNS = ("id, subscriber, slot, built_at, status, subject, message_id, message, entry_count, "
                  "attempts, last_error, last_code, next_attempt, sent_at, possible_duplicate, "
                  "claimed_by, claim_until, expires_at, dropped")
_CHUNK = 500  # parameters per IN (...) list: well under SQLite's limit


@dataclass(frozen=True)
class IssueRow:
    id: str
    subscriber: str
    slot: datetime
    built_at: datetime
    status: str
    subject: str | None
    message_id: str | None
    message: bytes | None
    entry_count: int
    attempts: int
    last_error: str | None
    last_code: int | None
    next_attempt: datetime | None
    sent_at: datetime | None
    possible_duplicate: bool
    claimed_by: str | None = None
    claim_until: datetime | None = None
    expires_at: datetime | None = None
    dropped: int = 0


@dataclass(frozen=True)
class SourceRow:
    name: str
    etag: str | None
    last_modified: str | None
    last_fetch: datetime | None
    last_ok: datetime | None
    last_error: str | None
    entries: int | None


@dataclass(frozen=True)
class StateRow:
    """What the store knows of one subscriber's standing (see newsletter/standing.py)."""

    email: str
    unsubscribed_at: datetime | None
    hard_failures: int
    paused_reason: str | None
    paused_at: datetime | None
    bounced_at: datetime | None


@dataclass(frozen=True)
class Head:
    """A subscriber's ledger at one slot: the issue of that slot (if any) and the one before it."""

    existing: str | None  # status of the issue of the slot, None when there is none
    previous_built_at: datetime | None


@dataclass(frozen=True)
class NewIssue:
    """An issue about to be committed (pending with its message, or empty)."""

    id: str
    subscriber: str
    slot: datetime
    built_at: datetime
    status: str  # pending | empty
    entry_ids: tuple[str, ...]
    subject: str | None = None
    message_id: str | None = None
    message: bytes | None = None
    note: str | None = None
    expires_at: datetime | None = None
    dropped: int = 0  # matched papers left out to keep the email under the size budget


@dataclass(frozen=True)
class Result:
    """The outcome of one delivery attempt, as the ledger records it."""

    issue_id: str
    recipient: str
    status: str  # sent | failed | pending (transient: retry at next_attempt)
    error: str | None = None
    code: int | None = None
    next_attempt: datetime | None = None
    possible_duplicate: bool = False


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Store:
    """One open state file. Use as a context manager or call close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists() and not path.is_file():
            raise StateError(f"{path}: the state must be a file; this is a folder or a device")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StateError(f"{path}: cannot create the state file: {path.parent} is not a folder") from None
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state folder: {exc.strerror}") from None
        fresh = not path.exists()
        try:
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=30000")
            if fresh:
                os.chmod(path, 0o600)  # it holds signed links and addresses
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot use the state file: {exc}") from exc

    def _setup(self) -> None:
        # Switching a new file to WAL can answer "locked" at once (no busy handler) when another
        # process creates the same file at the same moment: retry for a while.
        for attempt in range(100):
            try:
                self.version()  # refuse an unrelated database before changing anything in it
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.upgrade()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    def version(self) -> int:
        """The schema version of the file; 0 for an empty file."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return 0
        if "meta" not in tables:
            raise StateError(f"{self.path}: this is not a newsletter state file (an unrelated SQLite "
                             "database?); it was left untouched: pass another --state")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise StateError(f"{self.path}: the state file has no valid schema version (meta.schema = "
                             f"{row[0] if row else 'missing'!r}); restore it from a backup")
        return int(row[0])

    def upgrade(self) -> tuple[int, int]:
        """Create or upgrade the schema; returns (from, to). Idempotent."""
        with self.transaction() as db:
            current = self.version()
            if current > SCHEMA_VERSION:
                raise StateError(f"{self.path}: written by a newer newsletter (schema {current}, this one "
                                 f"knows {SCHEMA_VERSION}); upgrade newsletter")
            if current == SCHEMA_VERSION:
                return current, current
            if current == 0:
                for statement in filter(str.strip, _V1.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema', '1')")
                start = 1
            else:
                start = current
            for version in range(start + 1, SCHEMA_VERSION + 1):
                for statement in filter(str.strip, _UPGRADES[version].split(";")):
                    db.execute(statement)
            db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        return current, SCHEMA_VERSION

    @classmethod
    def snapshot(cls, path: Path) -> Store:
        """An in-memory copy of the state file (or an empty one): changes never reach the disk."""
        store = cls.__new__(cls)
        store.path = path
        store.db = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            if not path.is_file():
                raise StateError(f"{path}: the state must be a file; this is a folder or a device")
            try:
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                source.backup(store.db)
                source.close()
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        try:
            store.upgrade()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        return store

    def reopen(self) -> Store:
        """Another connection to the same state (for another thread)."""
        return Store(self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- entries -----------------------------------------------------------------------------

    def upsert_entries(self, entries: Iterable[Entry], now: datetime) -> dict[str, int]:
        """Insert or merge entries; returns counts of new / updated / unchanged."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        with self.transaction() as db:
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
                    db.execute("DELETE FROM entries WHERE id=?", (old.id,))
                    db.execute("UPDATE issue_entries SET entry_id=? WHERE entry_id=?", (merged.id, old.id))
                self._write(replace(merged, updated=now), insert=merged.id != old.id)
                counts["updated"] += 1
        return counts

    def _find(self, entry: Entry) -> Entry | None:
        row = self.db.execute("SELECT * FROM entries WHERE id=?", (entry.id,)).fetchone()
        if row is None:
            # The same paper first seen without an arXiv id (or now seen without one).
            for candidate in self.db.execute(
                "SELECT * FROM entries WHERE title_key=?", (title_key(entry.title),)
            ):
                if is_title_id(candidate[0]) or is_title_id(entry.id):
                    row = candidate
                    break
        return _entry(row) if row else None

    def _write(self, e: Entry, insert: bool) -> None:
        values = (
            e.id, title_key(e.title), e.title, e.abstract, json.dumps(list(e.authors)), e.author_count,
            e.published.isoformat() if e.published else None, e.upvotes, e.comments, e.organization,
            json.dumps(e.links.as_dict()), json.dumps(list(e.sources)), _ts(e.first_seen), _ts(e.updated),
        )
        verb = "INSERT" if insert else "REPLACE"
        self.db.execute(f"{verb} INTO entries VALUES ({_marks(14)})", values)

    def entries(self, since: datetime | None = None, until: datetime | None = None) -> list[Entry]:
        """Entries first seen in (since, until], oldest first."""
        sql, args = "SELECT * FROM entries WHERE 1=1", []
        if since is not None:
            sql += " AND first_seen > ?"
            args.append(_ts(since))
        if until is not None:
            sql += " AND first_seen <= ?"
            args.append(_ts(until))
        sql += " ORDER BY first_seen, id"
        return [_entry(r) for r in self.db.execute(sql, args)]

    def entry_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])

    # --- issues: reads -------------------------------------------------------------------------

    def issue(self, issue_id: str) -> IssueRow | None:
        row = self.db.execute(f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE id=?", (issue_id,)).fetchone()
        return _issue(row) if row else None

    def last_issue(self, subscriber: str, before: datetime | None = None) -> IssueRow | None:
        sql, args = f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE subscriber=?", [subscriber]
        if before is not None:
            sql += " AND slot < ?"
            args.append(_ts(before) or "")
        row = self.db.execute(sql + " ORDER BY slot DESC LIMIT 1", args).fetchone()
        return _issue(row) if row else None

    def last_issues(self, subscribers: Sequence[str]) -> dict[str, IssueRow]:
        """The latest issue of each of these subscribers, in bulk."""
        out: dict[str, IssueRow] = {}
        for chunk in _chunks(subscribers):
            rows = self.db.execute(
                f"SELECT {_ISSUE_COLUMNS} FROM issues i WHERE subscriber IN ({_marks(len(chunk))}) "
                "AND slot = (SELECT max(slot) FROM issues j WHERE j.subscriber = i.subscriber)", list(chunk))
            out.update((r[1], _issue(r)) for r in rows)
        return out

    def heads(self, slots: dict[str, datetime]) -> dict[str, Head]:
        """For each subscriber and slot: the status of that slot's issue, and when the previous
        issue was built. Two bulk reads per chunk of subscribers."""
        out: dict[str, Head] = {}
        emails = list(slots)
        for chunk in _chunks(emails):
            marks = _marks(len(chunk))
            rows = self.db.execute(f"SELECT subscriber, slot, status, built_at FROM issues "
                                   f"WHERE subscriber IN ({marks})", list(chunk)).fetchall()
            existing: dict[str, str] = {}
            previous: dict[str, tuple[str, str]] = {}
            for email, slot, status, built in rows:
                mine = _ts(slots[email])
                if slot == mine:
                    existing[email] = status
                elif mine is not None and slot < mine and (email not in previous or slot > previous[email][0]):
                    previous[email] = (slot, built)
            for email in chunk:
                prev = previous.get(email)
                out[email] = Head(existing.get(email), _dt(prev[1]) if prev else None)
        return out

    def delivered_among(self, subscribers: Sequence[str], entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Which of these entries each subscriber already has in a sent or pending issue."""
        out: dict[str, set[str]] = {}
        if not subscribers or not entry_ids:
            return out
        wanted = set(entry_ids)
        for chunk in _chunks(subscribers):
            rows = self.db.execute(
                "SELECT ie.subscriber, ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
                f"WHERE ie.subscriber IN ({_marks(len(chunk))}) AND i.status IN ('pending', 'sent')", list(chunk))
            for email, entry_id in rows:
                if entry_id in wanted:
                    out.setdefault(email, set()).add(entry_id)
        return out

    def delivered_ids(self, subscriber: str) -> set[str]:
        """Entries already in an issue for this subscriber that went out or is going out."""
        rows = self.db.execute(
            "SELECT ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
            "WHERE ie.subscriber=? AND i.status IN ('pending', 'sent')", (subscriber,))
        return {r[0] for r in rows}

    def pending_issues(self, now: datetime, subscriber: str | None = None) -> list[IssueRow]:
        sql = (f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE status='pending' "
               "AND (next_attempt IS NULL OR next_attempt <= ?)")
        args: list[object] = [_ts(now)]
        if subscriber:
            sql += " AND subscriber=?"
            args.append(subscriber)
        return [_issue(r) for r in self.db.execute(sql + " ORDER BY slot, subscriber", args)]

    def issues(self, status: str | None = None) -> list[IssueRow]:
        sql, args = f"SELECT {_ISSUE_COLUMNS} FROM issues", []
        if status:
            sql += " WHERE status=?"
            args.append(status)
        return [_issue(r) for r in self.db.execute(sql + " ORDER BY slot, subscriber", args)]

    def claims(self) -> dict[str, int]:
        """Pending issues per claiming worker (unclaimed under '')."""
        rows = self.db.execute("SELECT coalesce(claimed_by, ''), count(*) FROM issues WHERE status='pending' "
                               "GROUP BY 1")
        return {r[0]: r[1] for r in rows}

    # --- issues: writes (the ledger's transitions; policy lives in newsletter/ledger.py) ---------

    def record_issues(self, issues: Sequence[NewIssue], owner: str | None, claim_until: datetime | None) -> list[str]:
        """Commit built issues in one transaction, pending ones claimed by `owner`. Returns the ids
        that were new (a slot already taken by another process is left as it is)."""
        added = []
        with self.transaction() as db:
            for n in issues:
                claimed = n.status == "pending" and owner is not None
                cur = db.execute(
                    "INSERT OR IGNORE INTO issues (id, subscriber, slot, built_at, status, subject, message_id, "
                    "message, entry_count, last_error, claimed_by, claim_until, expires_at, size, dropped) "
                    f"VALUES ({_marks(15)})",
                    (n.id, n.subscriber, _ts(n.slot), _ts(n.built_at), n.status, n.subject, n.message_id,
                     n.message, len(n.entry_ids), n.note, owner if claimed else None,
                     _ts(claim_until) if claimed else None, _ts(n.expires_at),
                     len(n.message) if n.message is not None else None, n.dropped))
                if cur.rowcount == 0:
                    continue
                added.append(n.id)
                db.executemany("INSERT OR IGNORE INTO issue_entries VALUES (?,?,?)",
                               [(n.id, n.subscriber, e) for e in n.entry_ids])
        return added

    def record_issue(self, issue_id: str, subscriber: str, slot: datetime, built_at: datetime,
                     status: str, entry_ids: Iterable[str], subject: str | None = None,
                     message_id: str | None = None, message: bytes | None = None,
                     note: str | None = None) -> bool:
        """Commit one issue, unclaimed. False if that slot was already taken."""
        new = NewIssue(issue_id, subscriber, slot, built_at, status, tuple(entry_ids), subject, message_id,
                       message, note)
        return bool(self.record_issues([new], None, None))

    def claim_pending(self, now: datetime, owner: str, until: datetime, limit: int,
                      stealable: Callable[[str, datetime], bool], *, subscribers: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> list[IssueRow]:
        """Claim up to `limit` pending issues due for an attempt, in one transaction: unclaimed ones,
        ones already ours, and ones whose holder `stealable` gives up (lease over, process gone)."""
        sql = (f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE status='pending' "
               "AND (next_attempt IS NULL OR next_attempt <= ?)")
        args: list[object] = [_ts(now)]
        if subscribers is not None:
            if not subscribers:
                return []
            sql += f" AND subscriber IN ({_marks(len(subscribers))})"
            args.extend(subscribers)
        skip = set(exclude)
        taken: list[IssueRow] = []
        with self.transaction() as db:
            for r in db.execute(sql + " ORDER BY slot, subscriber", args):
                row = _issue(r)
                if row.id in skip:
                    continue
                holder = row.claimed_by
                if holder and holder != owner and row.claim_until and not stealable(holder, row.claim_until):
                    continue
                taken.append(row)
                if len(taken) >= limit:
                    break
            db.executemany("UPDATE issues SET claimed_by=?, claim_until=? WHERE id=?",
                           [(owner, _ts(until), row.id) for row in taken])
        return [replace(row, claimed_by=owner, claim_until=until) for row in taken]

    def renew_claims(self, owner: str, until: datetime) -> int:
        """Extend the lease of every pending issue this owner holds."""
        with self.transaction() as db:
            cur = db.execute("UPDATE issues SET claim_until=? WHERE claimed_by=? AND status='pending'",
                             (_ts(until), owner))
        return cur.rowcount

    def holds(self, owner: str, issue_ids: Sequence[str]) -> set[str]:
        """Which of these issues are still pending and claimed by `owner`."""
        out: set[str] = set()
        for chunk in _chunks(list(issue_ids)):
            rows = self.db.execute(f"SELECT id FROM issues WHERE id IN ({_marks(len(chunk))}) "
                                   "AND status='pending' AND claimed_by=?", [*chunk, owner])
            out.update(r[0] for r in rows)
        return out

    def release_claims(self, owner: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE issues SET claimed_by=NULL, claim_until=NULL WHERE claimed_by=? "
                       "AND status='pending'", (owner,))

    def record_results(self, results: Sequence[Result], now: datetime, owner: str, pause_after: int) -> list[str]:
        """Commit a group of delivery outcomes in one transaction. A sent issue drops its message
        bytes. Permanent failures count towards pausing the subscriber; returns who got paused."""
        paused: list[str] = []
        with self.transaction() as db:
            for r in results:
                if r.status == "sent":
                    db.execute("UPDATE issues SET status='sent', sent_at=?, attempts=attempts+1, last_error=NULL, "
                               "message=NULL, claimed_by=NULL, claim_until=NULL, "
                               "possible_duplicate=possible_duplicate OR ? WHERE id=? AND status='pending'",
                               (_ts(now), int(r.possible_duplicate), r.issue_id))
                    db.execute("UPDATE subscriber_state SET hard_failures=0 WHERE email=? AND hard_failures>0",
                               (r.recipient,))
                    continue
                # A transient failure keeps its claim until the run releases it (in-run retries).
                db.execute(
                    "UPDATE issues SET status=?, attempts=attempts+1, last_error=?, last_code=?, next_attempt=?, "
                    "possible_duplicate=possible_duplicate OR ?, "
                    "claimed_by=CASE WHEN ?='failed' THEN NULL ELSE claimed_by END, "
                    "claim_until=CASE WHEN ?='failed' THEN NULL ELSE claim_until END "
                    "WHERE id=? AND status='pending'",
                    (r.status, r.error, r.code, _ts(r.next_attempt), int(r.possible_duplicate), r.status, r.status,
                     r.issue_id))
                if r.status == "failed":
                    db.execute("INSERT INTO subscriber_state (email, hard_failures) VALUES (?, 1) "
                               "ON CONFLICT(email) DO UPDATE SET hard_failures=hard_failures+1", (r.recipient,))
                    n = db.execute("SELECT hard_failures FROM subscriber_state WHERE email=?",
                                   (r.recipient,)).fetchone()[0]
                    if n >= pause_after:
                        db.execute("UPDATE subscriber_state SET paused_reason=?, paused_at=coalesce(paused_at, ?) "
                                   "WHERE email=? AND paused_reason IS NULL",
                                   (f"paused after {n} permanent delivery failures", _ts(now), r.recipient))
                        paused.append(r.recipient)
        return paused

    def expire(self, issue_ids: Sequence[tuple[str, str]]) -> None:
        """Mark pending issues expired, each with its reason."""
        with self.transaction() as db:
            db.executemany("UPDATE issues SET status='expired', last_error=?, claimed_by=NULL, claim_until=NULL "
                           "WHERE id=? AND status='pending'", [(why, i) for i, why in issue_ids])

    # --- subscriber state --------------------------------------------------------------------

    def states(self, emails: Sequence[str] | None = None) -> dict[str, StateRow]:
        """The state rows of these subscribers (all when None), in bulk."""
        cols = "email, unsubscribed_at, hard_failures, paused_reason, paused_at, bounced_at"
        if emails is None:
            rows: Iterable[tuple] = self.db.execute(f"SELECT {cols} FROM subscriber_state")  # type: ignore[type-arg]
            return {r[0]: _state(r) for r in rows}
        out: dict[str, StateRow] = {}
        for chunk in _chunks(list(emails)):
            for r in self.db.execute(f"SELECT {cols} FROM subscriber_state WHERE email IN "
                                     f"({_marks(len(chunk))})", list(chunk)):
                out[r[0]] = _state(r)
        return out

    def set_unsubscribed(self, email: str, now: datetime) -> None:
        """One commit: the subscriber gets nothing from now on."""
        with self.transaction() as db:
            db.execute("INSERT INTO subscriber_state (email, unsubscribed_at) VALUES (?, ?) "
                       "ON CONFLICT(email) DO UPDATE SET unsubscribed_at=coalesce(unsubscribed_at, "
                       "excluded.unsubscribed_at)", (email, _ts(now)))

    def set_paused(self, email: str, reason: str | None, now: datetime) -> None:
        """Pause with a reason, or (None) resume: clears pauses, failures and an unsubscribe."""
        with self.transaction() as db:
            if reason is None:
                db.execute("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, hard_failures=0, "
                           "unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
            else:
                db.execute("INSERT INTO subscriber_state (email, paused_reason, paused_at) VALUES (?, ?, ?) "
                           "ON CONFLICT(email) DO UPDATE SET paused_reason=excluded.paused_reason, "
                           "paused_at=excluded.paused_at", (email, reason, _ts(now)))

    def unsubscribed(self) -> set[str]:
        rows = self.db.execute("SELECT email FROM subscriber_state WHERE unsubscribed_at IS NOT NULL")
        return {r[0] for r in rows}

    # --- store-held subscribers ------------------------------------------------------------------

    def add_subscribers(self, subscribers: Iterable[Subscriber], now: datetime, *, replace_existing: bool = False) -> int:
        """Insert store-held subscribers in one transaction; returns how many were written."""
        verb = "INSERT OR REPLACE" if replace_existing else "INSERT"
        rows = [_subscriber_row(s, now) for s in subscribers]
        try:
            with self.transaction() as db:
                db.executemany(f"{verb} INTO subscribers VALUES ({_marks(10)})", rows)
        except sqlite3.IntegrityError as exc:
            raise StateError(f"a subscriber is already in the store ({exc})") from None
        return len(rows)

    def update_subscriber(self, subscriber: Subscriber) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT added_at FROM subscribers WHERE email=?", (subscriber.email,)).fetchone()
            if row is None:
                raise StateError(f"no subscriber '{subscriber.email}' in the store")
            db.execute(f"REPLACE INTO subscribers VALUES ({_marks(10)})",
                       _subscriber_row(subscriber, _dt(row[0]) or datetime.now(timezone.utc)))

    def remove_subscriber(self, email: str) -> bool:
        with self.transaction() as db:
            cur = db.execute("DELETE FROM subscribers WHERE email=?", (email,))
        return cur.rowcount == 1

    def subscriber(self, email: str) -> Subscriber | None:
        row = self.db.execute("SELECT * FROM subscribers WHERE email=?", (email,)).fetchone()
        return _subscriber(row) if row else None

    def subscriber_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM subscribers").fetchone()[0])

    def subscribers_page(self, after: str = "", limit: int = 1000) -> list[Subscriber]:
        """Store-held subscribers in address order, `limit` at a time (keyset pagination)."""
        rows = self.db.execute("SELECT * FROM subscribers WHERE email > ? ORDER BY email LIMIT ?", (after, limit))
        return [_subscriber(r) for r in rows]

    def known(self, emails: Sequence[str]) -> set[str]:
        """Which of these addresses are store-held subscribers."""
        out: set[str] = set()
        for chunk in _chunks(list(emails)):
            out.update(r[0] for r in self.db.execute(
                f"SELECT email FROM subscribers WHERE email IN ({_marks(len(chunk))})", list(chunk)))
        return out

    def schedules(self) -> set[tuple[str, str]]:
        """The distinct (cron, time zone) pairs of store-held subscribers."""
        return {(r[0], r[1]) for r in self.db.execute("SELECT DISTINCT schedule, timezone FROM subscribers")}

    # --- sources -----------------------------------------------------------------------------

    def source(self, name: str) -> SourceRow | None:
        row = self.db.execute("SELECT * FROM sources WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        return SourceRow(row[0], row[1], row[2], _dt(row[3]), _dt(row[4]), row[5], row[6])

    def sources(self) -> list[SourceRow]:
        names = [r[0] for r in self.db.execute("SELECT name FROM sources ORDER BY name")]
        return [s for s in map(self.source, names) if s]

    def record_fetch(self, name: str, now: datetime, *, error: str | None = None,
                     entries: int | None = None, etag: str | None = None,
                     last_modified: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO sources (name) VALUES (?)", (name,))
            if error:
                db.execute("UPDATE sources SET last_fetch=?, last_error=? WHERE name=?",
                           (_ts(now), error, name))
            else:
                db.execute("UPDATE sources SET last_fetch=?, last_ok=?, last_error=NULL, "
                           "entries=coalesce(?, entries), etag=coalesce(?, etag), "
                           "last_modified=coalesce(?, last_modified) WHERE name=?",
                           (_ts(now), _ts(now), entries, etag, last_modified, name))


def _entry(row: tuple) -> Entry:  # type: ignore[type-arg]
    return Entry(
        id=row[0], title=row[2], abstract=row[3], authors=tuple(json.loads(row[4])),
        author_count=row[5], published=date.fromisoformat(row[6]) if row[6] else None,
        upvotes=row[7], comments=row[8], organization=row[9], links=Links(**json.loads(row[10])),
        sources=tuple(json.loads(row[11])), first_seen=_dt(row[12]), updated=_dt(row[13]),
    )


def _issue(row: tuple) -> IssueRow:  # type: ignore[type-arg]
    return IssueRow(
        id=row[0], subscriber=row[1], slot=_dt(row[2]), built_at=_dt(row[3]), status=row[4],  # type: ignore[arg-type]
        subject=row[5], message_id=row[6], message=row[7], entry_count=row[8], attempts=row[9],
        last_error=row[10], last_code=row[11], next_attempt=_dt(row[12]), sent_at=_dt(row[13]),
        possible_duplicate=bool(row[14]), claimed_by=row[15], claim_until=_dt(row[16]), expires_at=_dt(row[17]),
        dropped=row[18] or 0,
    )


def _state(row: tuple) -> StateRow:  # type: ignore[type-arg]
    return StateRow(row[0], _dt(row[1]), row[2], row[3], _dt(row[4]), _dt(row[5]))


def _subscriber_row(s: Subscriber, now: datetime) -> tuple:  # type: ignore[type-arg]
    return (s.email, s.name, json.dumps(list(s.keywords)), json.dumps(list(s.exclude)), s.schedule, s.timezone,
            s.max_entries, s.min_upvotes, int(s.send_empty), _ts(now))


def _subscriber(row: tuple) -> Subscriber:  # type: ignore[type-arg]
    return Subscriber(email=row[0], name=row[1], keywords=tuple(json.loads(row[2])), exclude=tuple(json.loads(row[3])),
                      schedule=row[4], timezone=row[5], max_entries=row[6], min_upvotes=row[7],
                      send_empty=bool(row[8]), home="store")
