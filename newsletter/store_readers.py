"""The readers' tables: pending sign-ups, rate-limit counters, ratings, bounce reports and the
per-subscriber link version that revokes manage and feed links; and the pauses with an end date.
`ReaderStore(location)` is the state store with these tables, on SQLite (a path) or PostgreSQL (a
`postgresql://` URL), until the store package takes them in (their schema is kept under its own meta
key, `readers_schema`, so the core schema is untouched). The SQL is the subset both dialects share.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from newsletter.errors import StateError
from newsletter.models import Entry, Subscriber
from newsletter.standing import pause_over
from newsletter.store.base import Store, is_url
from newsletter.store.rows import dt as _dt
from newsletter.store.rows import entry as _entry
from newsletter.store.rows import marks as _marks
from newsletter.store.rows import subscriber_values as _subscriber_row
from newsletter.store.rows import ts as _ts
from newsletter.store.rows import upsert
from newsletter.store.postgres import PostgresStore
from newsletter.store.sqlite import SqliteStore

READERS_SCHEMA = 1
# the readers' tables and their columns (`db copy` moves them with the core tables)
READER_TABLES: dict[str, tuple[str, ...]] = {
    "signups": ("email", "nonce", "profile", "created_at", "expires_at"),
    "rate_events": ("bucket", "at"),
    "ratings": ("email", "entry_id", "issue_id", "verdict", "at"),
    "bounces": ("report", "email", "kind", "status", "issue_id", "at"),
    "link_versions": ("email", "version"),
}
_READERS_V1 = """
CREATE TABLE IF NOT EXISTS signups (
    email {T} PRIMARY KEY, nonce {T} NOT NULL, profile {T} NOT NULL,
    created_at {T} NOT NULL, expires_at {T} NOT NULL);
CREATE INDEX IF NOT EXISTS signups_expires ON signups(expires_at);
CREATE TABLE IF NOT EXISTS rate_events (bucket {T} NOT NULL, at {T} NOT NULL);
CREATE INDEX IF NOT EXISTS rate_events_bucket ON rate_events(bucket, at);
CREATE TABLE IF NOT EXISTS ratings (
    email {T} NOT NULL, entry_id {T} NOT NULL, issue_id {T}, verdict INTEGER NOT NULL, at {T} NOT NULL,
    PRIMARY KEY (email, entry_id));
CREATE TABLE IF NOT EXISTS bounces (
    report {T} NOT NULL, email {T} NOT NULL, kind {T} NOT NULL, status {T}, issue_id {T},
    at {T} NOT NULL, PRIMARY KEY (report, email));
CREATE INDEX IF NOT EXISTS bounces_email ON bounces(email, at);
CREATE TABLE IF NOT EXISTS link_versions (email {T} PRIMARY KEY, version INTEGER NOT NULL);
"""
# Text columns compare byte by byte on PostgreSQL too (timestamps are compared as text).
_DDL = {"sqlite": _READERS_V1.replace("{T}", "TEXT"), "postgresql": _READERS_V1.replace("{T}", 'TEXT COLLATE "C"')}
_SUBSCRIBER_UPSERT = upsert("subscribers", "email")


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


class ReaderStore(Store):
    """The state store with the readers' tables: `ReaderStore(location)` opens the dialect's own."""

    dialect: ClassVar[str] = ""
    # how issue_entries rows recorded before schema 6 (no position) are read back in the order they were written
    _insert_order: ClassVar[str] = ""
    _errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __new__(cls, location: Path | str) -> ReaderStore:  # noqa: D102
        if cls is ReaderStore:
            return super().__new__(PostgresReaderStore if is_url(location) else SqliteReaderStore,  # type: ignore[return-value]
                                   location)
        return super().__new__(cls, location)  # type: ignore[return-value]

    def __init__(self, location: Path | str) -> None:
        super().__init__(location)  # type: ignore[call-arg]  # the dialect's store: next in the MRO
        self._readers_open()

    def _readers_open(self) -> None:
        try:
            self.readers_upgrade()
        except self._errors as exc:
            self.close()
            raise StateError(f"{self.path}: cannot use the state: {str(exc).strip()}") from exc

    @classmethod
    def snapshot(cls, location: Path | str) -> ReaderStore:
        """A copy that writes never leave, with the readers' tables."""
        target = cls if cls is not ReaderStore else PostgresReaderStore if is_url(location) else SqliteReaderStore
        store = super(ReaderStore, target).snapshot(location)  # the dialect's snapshot, as `target`
        assert isinstance(store, ReaderStore)
        store._readers_open()
        return store

    def __enter__(self) -> ReaderStore:
        return self

    def readers_upgrade(self) -> None:
        row = self._q("SELECT value FROM meta WHERE key='readers_schema'").fetchone()
        if row is not None and int(row[0]) == READERS_SCHEMA:
            return  # every open but the first: no lock taken
        with self.transaction():
            self._serialise("readers_schema")  # two services started together create the tables once
            row = self._q("SELECT value FROM meta WHERE key='readers_schema'").fetchone()
            if row is not None and int(row[0]) > READERS_SCHEMA:
                raise StateError(f"{self.path}: readers' tables written by a newer newsletter; upgrade newsletter")
            if row is None:
                for statement in filter(str.strip, _DDL[self.dialect].split(";")):
                    self._q(statement)
                self._q("INSERT INTO meta VALUES ('readers_schema', ?)", (str(READERS_SCHEMA),))

    # --- rate limits -----------------------------------------------------------------------------

    def take_rate(self, limits: Sequence[tuple[str, int]], since: datetime, now: datetime) -> bool:
        """Count one event in every bucket if each has had fewer than its limit since `since`;
        else count nothing and answer False. One transaction (serialised), so two requests cannot
        both squeeze in."""
        with self.transaction():
            self._serialise("rate_events")
            for bucket, limit in limits:
                n = self._q("SELECT count(*) FROM rate_events WHERE bucket=? AND at>?", (bucket, _ts(since))).fetchone()[0]
                if n >= limit:
                    return False
            self._many("INSERT INTO rate_events VALUES (?, ?)", [(b, _ts(now)) for b, _ in limits])
        return True

    # --- sign-ups --------------------------------------------------------------------------------

    def put_signup(self, signup: Signup) -> None:
        """A pending sign-up; a new one for the same address replaces the old (whose link dies)."""
        with self.transaction():
            self._q("INSERT INTO signups VALUES (?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
                    "nonce=excluded.nonce, profile=excluded.profile, created_at=excluded.created_at, "
                    "expires_at=excluded.expires_at",
                    (signup.email, signup.nonce, json.dumps(signup.profile), _ts(signup.created_at),
                     _ts(signup.expires_at)))

    def signup(self, email: str) -> Signup | None:
        row = self._q("SELECT email, nonce, profile, created_at, expires_at FROM signups WHERE email=?",
                      (email,)).fetchone()
        if row is None:
            return None
        return Signup(row[0], row[1], json.loads(row[2]), _dt(row[3]), _dt(row[4]))  # type: ignore[arg-type]

    def purge(self, now: datetime, rate_before: datetime) -> int:
        """Drop expired sign-ups and rate events older than `rate_before`; returns sign-ups dropped."""
        with self.transaction():
            n = self._q("DELETE FROM signups WHERE expires_at<=?", (_ts(now),)).rowcount
            self._q("DELETE FROM rate_events WHERE at<=?", (_ts(rate_before),))
        return int(n)

    def confirm_signup(self, email: str, nonce: str, subscriber: Subscriber | None, now: datetime) -> bool:
        """In one transaction: the pending sign-up (with this nonce) goes, the subscriber is stored
        (None: they are defined in the file already), and any earlier unsubscribe, pause or bounce is
        lifted. False when there is no such pending sign-up (used, replaced or purged)."""
        with self.transaction():
            gone = self._q("DELETE FROM signups WHERE email=? AND nonce=? AND expires_at>?",
                           (email, nonce, _ts(now))).rowcount
            if not gone:
                return False
            if subscriber is not None:
                self._q(_SUBSCRIBER_UPSERT, _subscriber_row(subscriber, now))
            self._q("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, paused_until=NULL, "
                    "hard_failures=0, unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
        return True

    # --- pauses (with an end date or not) -------------------------------------------------------

    def set_pause(self, email: str, reason: str | None, now: datetime, until: datetime | None = None) -> None:
        """Pause with a reason (until `until`, UTC, when given: `end_pauses` lifts it then), or (None)
        resume: clears pauses, failures, a bounce and an unsubscribe, as `Store.set_paused` does."""
        with self.transaction():
            if reason is None:
                self._q("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, paused_until=NULL, "
                        "hard_failures=0, unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
                return
            self._q("INSERT INTO subscriber_state (email, paused_reason, paused_at, paused_until) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (email) DO UPDATE SET paused_reason=excluded.paused_reason, "
                    "paused_at=excluded.paused_at, paused_until=excluded.paused_until",
                    (email, reason, _ts(now), _ts(until)))

    def paused_until(self, email: str) -> datetime | None:
        """When this subscriber's pause ends (None: not paused, or paused with no end)."""
        row = self._q("SELECT paused_until FROM subscriber_state WHERE email=? AND paused_reason IS NOT NULL",
                      (email,)).fetchone()
        return _dt(row[0]) if row else None

    def end_pauses(self, now: datetime) -> list[str]:
        """Lift every pause whose end has come (newsletter/standing.py says when); returns who resumed."""
        resumed = []
        with self.transaction():
            rows = self._q("SELECT email, paused_until FROM subscriber_state "
                           "WHERE paused_until IS NOT NULL AND paused_reason IS NOT NULL").fetchall()
            for email, until in rows:
                if pause_over(_dt(until), now):  # type: ignore[arg-type]
                    self._q("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, paused_until=NULL "
                            "WHERE email=? AND paused_until=?", (email, until))
                    resumed.append(email)
        return sorted(resumed)

    # --- revocable links -------------------------------------------------------------------------

    def link_version(self, email: str) -> int:
        row = self._q("SELECT version FROM link_versions WHERE email=?", (email,)).fetchone()
        return int(row[0]) if row else 0

    def link_versions(self, emails: Sequence[str]) -> dict[str, int]:
        """The link version of each of these subscribers (those never rotated: absent, i.e. 0), in bulk."""
        out: dict[str, int] = {}
        for i in range(0, len(emails), 500):
            chunk = list(emails[i:i + 500])
            out.update((r[0], int(r[1])) for r in self._q(
                f"SELECT email, version FROM link_versions WHERE email IN ({_marks(len(chunk))})", chunk))
        return out

    def rotate_links(self, email: str) -> int:
        """Revoke every manage and feed link of this subscriber; returns the new version."""
        with self.transaction():
            self._q("INSERT INTO link_versions VALUES (?, 1) ON CONFLICT (email) DO UPDATE SET "
                    "version=link_versions.version+1", (email,))
            return int(self._q("SELECT version FROM link_versions WHERE email=?", (email,)).fetchone()[0])

    # --- ratings ---------------------------------------------------------------------------------

    def rate(self, rating: Rating) -> None:
        """Record (or change) a subscriber's verdict on one paper."""
        with self.transaction():
            self._q("INSERT INTO ratings VALUES (?, ?, ?, ?, ?) ON CONFLICT (email, entry_id) DO UPDATE SET "
                    "issue_id=excluded.issue_id, verdict=excluded.verdict, at=excluded.at",
                    (rating.email, rating.entry_id, rating.issue_id, rating.verdict, _ts(rating.at)))

    def ratings(self, email: str) -> list[Rating]:
        rows = self._q("SELECT email, entry_id, issue_id, verdict, at FROM ratings WHERE email=? "
                       "ORDER BY at DESC, entry_id", (email,))
        return [Rating(r[0], r[1], r[2], r[3], _dt(r[4])) for r in rows]  # type: ignore[arg-type]

    def forget_rating(self, email: str, entry_id: str) -> None:
        with self.transaction():
            self._q("DELETE FROM ratings WHERE email=? AND entry_id=?", (email, entry_id))

    # --- bounces ---------------------------------------------------------------------------------

    def record_bounce(self, report: str, email: str, kind: str, status: str | None, issue_id: str | None,
                      now: datetime, *, soft_limit: int, since: datetime) -> str | None:
        """Record one bounce (once per report and address) and suppress the address when it is hard,
        or the `soft_limit`-th soft one since `since`. Returns "suppressed", "recorded" or None (seen)."""
        with self.transaction():
            self._serialise("bounces")
            new = self._q("INSERT INTO bounces VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (report, email, kind, status, issue_id, _ts(now))).rowcount
            if not new:
                return None
            soft = self._q("SELECT count(*) FROM bounces WHERE email=? AND kind='soft' AND at>?",
                           (email, _ts(since))).fetchone()[0]
            if kind == "hard" or soft >= soft_limit:
                self._q("INSERT INTO subscriber_state (email, bounced_at) VALUES (?, ?) ON CONFLICT (email) "
                        "DO UPDATE SET bounced_at=coalesce(subscriber_state.bounced_at, excluded.bounced_at)",
                        (email, _ts(now)))
                return "suppressed"
        return "recorded"

    # --- issues as the web shows them ------------------------------------------------------------

    def issue_for_message_id(self, message_id: str) -> tuple[str, str] | None:
        """(issue id, subscriber) of the issue sent with this Message-ID."""
        row = self._q("SELECT id, subscriber FROM issues WHERE message_id=?", (message_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def issue_subscriber(self, issue_id: str) -> str | None:
        row = self._q("SELECT subscriber FROM issues WHERE id=?", (issue_id,)).fetchone()
        return row[0] if row else None

    def sent_issues(self, email: str, limit: int = 20) -> list[SentIssue]:
        rows = self._q("SELECT id, subscriber, slot, sent_at, subject, entry_count FROM issues "
                       "WHERE subscriber=? AND status='sent' ORDER BY slot DESC LIMIT ?", (email, limit))
        return [SentIssue(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4], r[5]) for r in rows]  # type: ignore[arg-type]

    def sent_issue(self, issue_id: str) -> SentIssue | None:
        r = self._q("SELECT id, subscriber, slot, sent_at, subject, entry_count FROM issues "
                    "WHERE id=? AND status='sent'", (issue_id,)).fetchone()
        return SentIssue(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4], r[5]) if r else None  # type: ignore[arg-type]

    def issue_entries(self, issue_id: str) -> list[Entry]:
        """The papers of one issue, in the order they were recorded."""
        rows = self._q("SELECT e.* FROM issue_entries ie JOIN entries e ON e.id=ie.entry_id "
                       f"WHERE ie.issue_id=? ORDER BY ie.position, {self._insert_order}", (issue_id,))
        return [_entry(r) for r in rows]


class SqliteReaderStore(ReaderStore, SqliteStore):
    dialect = "sqlite"
    _insert_order = "ie.rowid"
    _errors = (sqlite3.DatabaseError,)


class PostgresReaderStore(ReaderStore, PostgresStore):
    dialect = "postgresql"
    _insert_order = "ie.ctid"  # the physical order: rows are written once (only an entry merge rewrites one)
    _errors = (psycopg.Error,)


def link_versions(store: Store, emails: Sequence[str]) -> dict[str, int]:
    """The link version of each subscriber, for the manage and feed links a digest carries, from any
    store of either dialect: one whose readers' tables were never made (no page ever served) has
    only version 0."""
    if isinstance(store, ReaderStore):
        return store.link_versions(emails)
    if store._q("SELECT value FROM meta WHERE key='readers_schema'").fetchone() is None:
        return {}
    return ReaderStore.link_versions(store, emails)  # type: ignore[arg-type]  # the same queries, this connection
