"""The SQLite state file: entries, issues (the delivery ledger), source cursors, subscriber state.

The only SQL in the project. Every write is a short transaction; the ledger row of an issue is
committed as `pending` (with the exact message bytes) before any SMTP transaction starts, and
becomes `sent` only after the server accepted it, so a killed process resumes without loss or
duplicates. `synchronous=FULL` makes each commit durable.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path

from newsletter.entries import is_title_id, merge, same_content, title_key
from newsletter.errors import StateError
from newsletter.models import Entry, Links

SCHEMA_VERSION = 1
_SCHEMA = """
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

# Issue statuses: pending (message committed, not yet accepted), sent, failed (permanent),
# empty (nothing to send for that slot), expired (too old to send).
OPEN_STATUSES = ("pending", "sent")


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


@dataclass(frozen=True)
class SourceRow:
    name: str
    etag: str | None
    last_modified: str | None
    last_fetch: datetime | None
    last_ok: datetime | None
    last_error: str | None
    entries: int | None


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    """One open state file. Use as a context manager or call close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=30000")
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot use the state file: {exc}") from exc

    def _setup(self) -> None:
        # Switching a new file to WAL can answer "locked" at once (no busy handler) when another
        # process creates the same file at the same moment: retry for a while.
        for attempt in range(100):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
                row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StateError(f"{self.path}: written by a newer newsletter (schema {row[0]}); upgrade")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    @classmethod
    def snapshot(cls, path: Path) -> Store:
        """An in-memory copy of the state file (or an empty one): changes never reach the disk."""
        store = cls.__new__(cls)
        store.path = path
        store.db = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            try:
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                source.backup(store.db)
                source.close()
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        store.db.executescript(_SCHEMA)
        return store

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
        self.db.execute(f"{verb} INTO entries VALUES ({','.join('?' * 14)})", values)

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
        return self.db.execute("SELECT count(*) FROM entries").fetchone()[0]

    # --- issues ------------------------------------------------------------------------------

    def issue(self, issue_id: str) -> IssueRow | None:
        row = self.db.execute("SELECT * FROM issues WHERE id=?", (issue_id,)).fetchone()
        return _issue(row) if row else None

    def last_issue(self, subscriber: str, before: datetime | None = None) -> IssueRow | None:
        sql, args = "SELECT * FROM issues WHERE subscriber=?", [subscriber]
        if before is not None:
            sql += " AND slot < ?"
            args.append(_ts(before) or "")
        row = self.db.execute(sql + " ORDER BY slot DESC LIMIT 1", args).fetchone()
        return _issue(row) if row else None

    def delivered_ids(self, subscriber: str) -> set[str]:
        """Entries already in an issue for this subscriber that went out or is going out."""
        rows = self.db.execute(
            "SELECT ie.entry_id FROM issue_entries ie JOIN issues i ON i.id = ie.issue_id "
            "WHERE ie.subscriber=? AND i.status IN ('pending', 'sent')", (subscriber,))
        return {r[0] for r in rows}

    def record_issue(self, issue_id: str, subscriber: str, slot: datetime, built_at: datetime,
                     status: str, entry_ids: Iterable[str], subject: str | None = None,
                     message_id: str | None = None, message: bytes | None = None,
                     note: str | None = None) -> bool:
        """Commit an issue (its message fixed from now on). False if that slot was already taken."""
        ids = list(entry_ids)
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO issues (id, subscriber, slot, built_at, status, subject, "
                "message_id, message, entry_count, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (issue_id, subscriber, _ts(slot), _ts(built_at), status, subject, message_id,
                 message, len(ids), note))
            if cur.rowcount == 0:
                return False
            db.executemany("INSERT OR IGNORE INTO issue_entries VALUES (?,?,?)",
                           [(issue_id, subscriber, e) for e in ids])
        return True

    def pending_issues(self, now: datetime, subscriber: str | None = None) -> list[IssueRow]:
        sql = "SELECT * FROM issues WHERE status='pending' AND (next_attempt IS NULL OR next_attempt <= ?)"
        args: list[object] = [_ts(now)]
        if subscriber:
            sql += " AND subscriber=?"
            args.append(subscriber)
        return [_issue(r) for r in self.db.execute(sql + " ORDER BY slot, subscriber", args)]

    def issues(self, status: str | None = None) -> list[IssueRow]:
        sql, args = "SELECT * FROM issues", []
        if status:
            sql += " WHERE status=?"
            args.append(status)
        return [_issue(r) for r in self.db.execute(sql + " ORDER BY slot, subscriber", args)]

    def claim(self, issue_id: str, owner: str, until: datetime, stealable: Callable[[str, datetime], bool]) -> bool:
        """Take a pending issue for delivery by this process (compare-and-swap on the claim).

        A claim held by another process is respected until it expires, unless `stealable` says its
        owner is gone (a killed `send` on this machine).
        """
        row = self.db.execute("SELECT status, claimed_by, claim_until FROM issues WHERE id=?",
                              (issue_id,)).fetchone()
        if row is None or row[0] != "pending":
            return False
        holder, held_until = row[1], _dt(row[2])
        if holder and holder != owner and held_until and not stealable(holder, held_until):
            return False
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE issues SET claimed_by=?, claim_until=? WHERE id=? AND status='pending' "
                "AND claimed_by IS ? AND claim_until IS ?", (owner, _ts(until), issue_id, holder, row[2]))
        return cur.rowcount == 1

    def mark_sent(self, issue_id: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE issues SET status='sent', sent_at=?, attempts=attempts+1, last_error=NULL, "
                       "claimed_by=NULL, claim_until=NULL WHERE id=?", (_ts(now), issue_id))

    def mark_attempt(self, issue_id: str, *, error: str, code: int | None, permanent: bool,
                     next_attempt: datetime | None, possible_duplicate: bool = False) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE issues SET status=?, attempts=attempts+1, last_error=?, last_code=?, "
                "next_attempt=?, possible_duplicate=possible_duplicate OR ?, claimed_by=NULL, "
                "claim_until=NULL WHERE id=? AND status='pending'",
                ("failed" if permanent else "pending", error, code, _ts(next_attempt),
                 int(possible_duplicate), issue_id))

    def mark_expired(self, issue_id: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE issues SET status='expired', last_error=? WHERE id=? AND status='pending'",
                       (reason, issue_id))

    # --- subscribers -------------------------------------------------------------------------

    def unsubscribed(self) -> set[str]:
        rows = self.db.execute("SELECT email FROM subscriber_state WHERE unsubscribed_at IS NOT NULL")
        return {r[0] for r in rows}

    def set_unsubscribed(self, email: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO subscriber_state (email, unsubscribed_at) VALUES (?, ?) "
                       "ON CONFLICT(email) DO UPDATE SET unsubscribed_at=excluded.unsubscribed_at",
                       (email, _ts(now)))

    def add_hard_failure(self, email: str, pause_after: int) -> bool:
        """Count a permanent failure; True when the subscriber is now paused."""
        with self.transaction() as db:
            db.execute("INSERT INTO subscriber_state (email, hard_failures) VALUES (?, 1) "
                       "ON CONFLICT(email) DO UPDATE SET hard_failures=hard_failures+1", (email,))
            n = db.execute("SELECT hard_failures FROM subscriber_state WHERE email=?", (email,)).fetchone()[0]
            if n >= pause_after:
                db.execute("UPDATE subscriber_state SET paused_reason=? WHERE email=?",
                           (f"paused after {n} permanent delivery failures", email))
                return True
        return False

    def clear_hard_failures(self, email: str) -> None:
        self.db.execute("UPDATE subscriber_state SET hard_failures=0 WHERE email=?", (email,))

    def paused(self) -> dict[str, str]:
        rows = self.db.execute("SELECT email, paused_reason FROM subscriber_state WHERE paused_reason IS NOT NULL")
        return {r[0]: r[1] for r in rows}

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


def _entry(row: tuple) -> Entry:
    return Entry(
        id=row[0], title=row[2], abstract=row[3], authors=tuple(json.loads(row[4])),
        author_count=row[5], published=date.fromisoformat(row[6]) if row[6] else None,
        upvotes=row[7], comments=row[8], organization=row[9], links=Links(**json.loads(row[10])),
        sources=tuple(json.loads(row[11])), first_seen=_dt(row[12]), updated=_dt(row[13]),
    )


def _issue(row: tuple) -> IssueRow:
    return IssueRow(
        id=row[0], subscriber=row[1], slot=_dt(row[2]), built_at=_dt(row[3]), status=row[4],  # type: ignore[arg-type]
        subject=row[5], message_id=row[6], message=row[7], entry_count=row[8], attempts=row[9],
        last_error=row[10], last_code=row[11], next_attempt=_dt(row[12]), sent_at=_dt(row[13]),
        possible_duplicate=bool(row[14]),
    )
