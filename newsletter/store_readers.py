"""The readers' tables (SQLite): pending sign-ups, rate-limit counters, ratings, bounce reports and
the per-subscriber link version that revokes manage and feed links. A mixin over `Store` (its
connection and transactions); `ReaderStore` is the store with these tables until the store package
takes them in (schema kept under its own meta key, `readers_schema`, so the core schema is untouched).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import contextmanager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from newsletter.errors import StateError
from newsletter.models import Entry, Subscriber
from newsletter.store.rows import dt as _dt
from newsletter.store.rows import entry as _entry
from newsletter.store.rows import marks as _marks
from newsletter.store.rows import subscriber_values as _subscriber_row
from newsletter.store.rows import ts as _ts
from newsletter.store.sqlite import SqliteStore

READERS_SCHEMA = 1
_READERS_V1 = """
CREATE TABLE IF NOT EXISTS signups (
    email TEXT PRIMARY KEY, nonce TEXT NOT NULL, profile TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS signups_expires ON signups(expires_at);
CREATE TABLE IF NOT EXISTS rate_events (bucket TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rate_events_bucket ON rate_events(bucket, at);
CREATE TABLE IF NOT EXISTS ratings (
    email TEXT NOT NULL, entry_id TEXT NOT NULL, issue_id TEXT, verdict INTEGER NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (email, entry_id));
CREATE TABLE IF NOT EXISTS bounces (
    report TEXT NOT NULL, email TEXT NOT NULL, kind TEXT NOT NULL, status TEXT, issue_id TEXT,
    at TEXT NOT NULL, PRIMARY KEY (report, email));
CREATE INDEX IF NOT EXISTS bounces_email ON bounces(email, at);
CREATE TABLE IF NOT EXISTS link_versions (email TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Signup:
    email: str
    nonce: str
    profile: dict[str, Any]  # the fields of the subscriber-to-be, validated when they were given
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Rating:
    email: str
    entry_id: str
    issue_id: str | None
    verdict: int  # +1 more like this, -1 less like this
    at: datetime


@dataclass(frozen=True)
class SentIssue:
    id: str
    subscriber: str
    slot: datetime
    sent_at: datetime | None
    subject: str | None
    entry_count: int


class ReadersMixin:
    """Methods over `self.db` / `self.transaction()` of a Store."""

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction of the store, yielding its SQLite connection."""
        with self.transaction():
            yield self.db

    db: sqlite3.Connection
    path: Path

    if TYPE_CHECKING:
        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...  # Store's  # noqa: E704

    def readers_upgrade(self) -> None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='readers_schema'").fetchone()
            if row is not None and int(row[0]) > READERS_SCHEMA:
                raise StateError(f"{self.path}: readers' tables written by a newer newsletter; upgrade newsletter")
            if row is None:
                for statement in filter(str.strip, _READERS_V1.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('readers_schema', ?)", (str(READERS_SCHEMA),))

    # --- rate limits -----------------------------------------------------------------------------

    def take_rate(self, limits: Sequence[tuple[str, int]], since: datetime, now: datetime) -> bool:
        """Count one event in every bucket if each has had fewer than its limit since `since`;
        else count nothing and answer False. One transaction, so two requests cannot both squeeze in."""
        with self._tx() as db:
            for bucket, limit in limits:
                n = db.execute("SELECT count(*) FROM rate_events WHERE bucket=? AND at>?",
                               (bucket, _ts(since))).fetchone()[0]
                if n >= limit:
                    return False
            db.executemany("INSERT INTO rate_events VALUES (?, ?)", [(b, _ts(now)) for b, _ in limits])
        return True

    # --- sign-ups --------------------------------------------------------------------------------

    def put_signup(self, signup: Signup) -> None:
        """A pending sign-up; a new one for the same address replaces the old (whose link dies)."""
        with self._tx() as db:
            db.execute("REPLACE INTO signups VALUES (?, ?, ?, ?, ?)",
                       (signup.email, signup.nonce, json.dumps(signup.profile), _ts(signup.created_at),
                        _ts(signup.expires_at)))

    def signup(self, email: str) -> Signup | None:
        row = self.db.execute("SELECT * FROM signups WHERE email=?", (email,)).fetchone()
        if row is None:
            return None
        return Signup(row[0], row[1], json.loads(row[2]), _dt(row[3]), _dt(row[4]))  # type: ignore[arg-type]

    def purge(self, now: datetime, rate_before: datetime) -> int:
        """Drop expired sign-ups and rate events older than `rate_before`; returns sign-ups dropped."""
        with self._tx() as db:
            n = db.execute("DELETE FROM signups WHERE expires_at<=?", (_ts(now),)).rowcount
            db.execute("DELETE FROM rate_events WHERE at<=?", (_ts(rate_before),))
        return int(n)

    def confirm_signup(self, email: str, nonce: str, subscriber: Subscriber | None, now: datetime) -> bool:
        """In one transaction: the pending sign-up (with this nonce) goes, the subscriber is stored
        (None: they are defined in the file already), and any earlier unsubscribe or bounce is
        lifted. False when there is no such pending sign-up (used, replaced or purged)."""
        with self._tx() as db:
            gone = db.execute("DELETE FROM signups WHERE email=? AND nonce=? AND expires_at>?",
                              (email, nonce, _ts(now))).rowcount
            if not gone:
                return False
            if subscriber is not None:
                db.execute(f"REPLACE INTO subscribers VALUES ({_marks(10)})", _subscriber_row(subscriber, now))
            db.execute("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, hard_failures=0, "
                       "unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
        return True

    # --- revocable links -------------------------------------------------------------------------

    def link_version(self, email: str) -> int:
        row = self.db.execute("SELECT version FROM link_versions WHERE email=?", (email,)).fetchone()
        return int(row[0]) if row else 0

    def link_versions(self, emails: Sequence[str]) -> dict[str, int]:
        """The link version of each of these subscribers (those never rotated: absent, i.e. 0), in bulk."""
        out: dict[str, int] = {}
        for i in range(0, len(emails), 500):
            chunk = list(emails[i:i + 500])
            out.update((r[0], int(r[1])) for r in self.db.execute(
                f"SELECT email, version FROM link_versions WHERE email IN ({_marks(len(chunk))})", chunk))
        return out

    def rotate_links(self, email: str) -> int:
        """Revoke every manage and feed link of this subscriber; returns the new version."""
        with self._tx() as db:
            db.execute("INSERT INTO link_versions VALUES (?, 1) ON CONFLICT(email) DO UPDATE SET "
                       "version=version+1", (email,))
            return int(db.execute("SELECT version FROM link_versions WHERE email=?", (email,)).fetchone()[0])

    # --- ratings ---------------------------------------------------------------------------------

    def rate(self, rating: Rating) -> None:
        """Record (or change) a subscriber's verdict on one paper."""
        with self._tx() as db:
            db.execute("REPLACE INTO ratings VALUES (?, ?, ?, ?, ?)",
                       (rating.email, rating.entry_id, rating.issue_id, rating.verdict, _ts(rating.at)))

    def ratings(self, email: str) -> list[Rating]:
        rows = self.db.execute("SELECT * FROM ratings WHERE email=? ORDER BY at DESC, entry_id", (email,))
        return [Rating(r[0], r[1], r[2], r[3], _dt(r[4])) for r in rows]  # type: ignore[arg-type]

    def forget_rating(self, email: str, entry_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM ratings WHERE email=? AND entry_id=?", (email, entry_id))

    # --- bounces ---------------------------------------------------------------------------------

    def record_bounce(self, report: str, email: str, kind: str, status: str | None, issue_id: str | None,
                      now: datetime, *, soft_limit: int, since: datetime) -> str | None:
        """Record one bounce (once per report and address) and suppress the address when it is hard,
        or the `soft_limit`-th soft one since `since`. Returns "suppressed", "recorded" or None (seen)."""
        with self._tx() as db:
            new = db.execute("INSERT OR IGNORE INTO bounces VALUES (?, ?, ?, ?, ?, ?)",
                             (report, email, kind, status, issue_id, _ts(now))).rowcount
            if not new:
                return None
            soft = db.execute("SELECT count(*) FROM bounces WHERE email=? AND kind='soft' AND at>?",
                              (email, _ts(since))).fetchone()[0]
            if kind == "hard" or soft >= soft_limit:
                db.execute("INSERT INTO subscriber_state (email, bounced_at) VALUES (?, ?) ON CONFLICT(email) "
                           "DO UPDATE SET bounced_at=coalesce(bounced_at, excluded.bounced_at)", (email, _ts(now)))
                return "suppressed"
        return "recorded"

    # --- issues as the web shows them ------------------------------------------------------------

    def issue_for_message_id(self, message_id: str) -> tuple[str, str] | None:
        """(issue id, subscriber) of the issue sent with this Message-ID."""
        row = self.db.execute("SELECT id, subscriber FROM issues WHERE message_id=?", (message_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def issue_subscriber(self, issue_id: str) -> str | None:
        row = self.db.execute("SELECT subscriber FROM issues WHERE id=?", (issue_id,)).fetchone()
        return row[0] if row else None

    def sent_issues(self, email: str, limit: int = 20) -> list[SentIssue]:
        rows = self.db.execute("SELECT id, subscriber, slot, sent_at, subject, entry_count FROM issues "
                               "WHERE subscriber=? AND status='sent' ORDER BY slot DESC LIMIT ?", (email, limit))
        return [SentIssue(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4], r[5]) for r in rows]  # type: ignore[arg-type]

    def sent_issue(self, issue_id: str) -> SentIssue | None:
        r = self.db.execute("SELECT id, subscriber, slot, sent_at, subject, entry_count FROM issues "
                            "WHERE id=? AND status='sent'", (issue_id,)).fetchone()
        return SentIssue(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4], r[5]) if r else None  # type: ignore[arg-type]

    def issue_entries(self, issue_id: str) -> list[Entry]:
        """The papers of one issue, in the order they were recorded."""
        rows = self.db.execute("SELECT e.* FROM issue_entries ie JOIN entries e ON e.id=ie.entry_id "
                               "WHERE ie.issue_id=? ORDER BY ie.rowid", (issue_id,))
        return [_entry(r) for r in rows]

    def entries_by_id(self, ids: Sequence[str]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            for r in self.db.execute(f"SELECT * FROM entries WHERE id IN ({_marks(len(chunk))})", chunk):
                out[r[0]] = _entry(r)
        return out


class ReaderStore(ReadersMixin, SqliteStore):  # type: ignore[misc]  # transaction: Store's, declared for mypy
    """The store with the readers' tables (until `Store` inherits ReadersMixin itself)."""

    def __init__(self, path: Path | str) -> None:  # a SQLite file: PostgreSQL gets these tables later
        super().__init__(Path(path))
        try:
            self.readers_upgrade()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot use the state file: {exc}") from exc

    @classmethod
    def snapshot(cls, path: Path | str) -> ReaderStore:
        store = super().snapshot(path)
        assert isinstance(store, ReaderStore)
        store.readers_upgrade()
        return store

    def __enter__(self) -> ReaderStore:
        return self


def link_versions(store: object, emails: Sequence[str]) -> dict[str, int]:
    """The link version of each subscriber, for the manage and feed links a digest carries, from any
    store: one whose readers' tables were never made (no page ever served) has only version 0."""
    if isinstance(store, ReadersMixin):
        return store.link_versions(emails)
    if isinstance(store, SqliteStore):
        if store.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='link_versions'").fetchone():
            return ReadersMixin.link_versions(store, emails)  # type: ignore[arg-type]  # the same connection
        return {}
    return {}  # the readers' tables live in SQLite only (for now): links carry version 0
