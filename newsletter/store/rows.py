"""What the stores hand out and take in: frozen rows, and their conversion to and from SQL values.
Both dialects store the same values (ISO-8601 UTC timestamps as text, JSON lists as text, flags as
integers), so a state moves between SQLite and PostgreSQL unchanged."""

from __future__ import annotations

import json
from functools import lru_cache
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from newsletter.models import Entry, Links, Subscriber
from newsletter.store.schema import TABLES

# Issue statuses: pending (message committed, not yet accepted), sent, failed (permanent),
# empty (nothing to send for that slot), expired (too old to send).
OPEN_STATUSES = ("pending", "sent")
# A pending issue's message bytes live in `issue_messages` (schema 7), or for an issue recorded before
# (or by an earlier release still running) in `issues.message`: read with the issue's row, from a
# query whose FROM names the `issues` table without an alias
MESSAGE = "coalesce((SELECT m.message FROM issue_messages m WHERE m.issue_id = issues.id), issues.message)"
ISSUE_COLUMNS = (f"id, subscriber, slot, built_at, status, subject, message_id, {MESSAGE}, entry_count, "
                 "attempts, last_error, last_code, next_attempt, sent_at, possible_duplicate, "
                 "claimed_by, claim_until, expires_at, dropped")
LEAN_COLUMNS = ISSUE_COLUMNS.replace(MESSAGE, "NULL")  # an issue row without its message bytes
assert LEAN_COLUMNS != ISSUE_COLUMNS
CHUNK = 500  # parameters per IN (...) list: well under either database's limit


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


def ts(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks(n: int) -> str:
    return ",".join("?" * n)


def upsert(table: str, key: str) -> str:
    """INSERT of a whole row of `table` that replaces the row with the same `key`."""
    cols = TABLES[table]
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c != key)
    return f"INSERT INTO {table} VALUES ({marks(len(cols))}) ON CONFLICT ({key}) DO UPDATE SET {updates}"


def entry_values(e: Entry, title_key: str) -> tuple:  # type: ignore[type-arg]
    return (e.id, title_key, e.title, e.abstract, json.dumps(list(e.authors)), e.author_count,
            e.published.isoformat() if e.published else None, e.upvotes, e.comments, e.organization,
            json.dumps(e.links.as_dict()), json.dumps(list(e.sources)), ts(e.first_seen), ts(e.updated))


def entry(row: Sequence) -> Entry:  # type: ignore[type-arg]
    return Entry(
        id=row[0], title=row[2], abstract=row[3], authors=tuple(json.loads(row[4])),
        author_count=row[5], published=date.fromisoformat(row[6]) if row[6] else None,
        upvotes=row[7], comments=row[8], organization=row[9], links=Links(**json.loads(row[10])),
        sources=tuple(json.loads(row[11])), first_seen=dt(row[12]), updated=dt(row[13]),
    )


def issue(row: Sequence) -> IssueRow:  # type: ignore[type-arg]
    message = row[7]
    return IssueRow(
        id=row[0], subscriber=row[1], slot=dt(row[2]), built_at=dt(row[3]), status=row[4],  # type: ignore[arg-type]
        subject=row[5], message_id=row[6], message=bytes(message) if message is not None else None,
        entry_count=row[8], attempts=row[9], last_error=row[10], last_code=row[11], next_attempt=dt(row[12]),
        sent_at=dt(row[13]), possible_duplicate=bool(row[14]), claimed_by=row[15], claim_until=dt(row[16]),
        expires_at=dt(row[17]), dropped=row[18] or 0,
    )


def state(row: Sequence) -> StateRow:  # type: ignore[type-arg]
    return StateRow(row[0], dt(row[1]), row[2], row[3], dt(row[4]), dt(row[5]))


_EXTRA_DEFAULTS = {"trending": 0, "updates": True, "must_include": [], "must_exclude": [], "near_misses": False}


def subscriber_values(s: Subscriber, now: datetime) -> tuple:  # type: ignore[type-arg]
    extra = {k: v for k, v in (("trending", s.trending), ("updates", s.updates), ("must_include", list(s.must_include)),
                                ("must_exclude", list(s.must_exclude)), ("near_misses", s.near_misses))
             if v != _EXTRA_DEFAULTS[k]}
    return (s.email, s.name, json.dumps(list(s.keywords)), json.dumps(list(s.exclude)), s.schedule, s.timezone,
            s.max_entries, s.min_upvotes, int(s.send_empty), ts(now), json.dumps(extra) if extra else None)


@lru_cache(maxsize=4096)  # a few MB at most: a `send` of 100,000 subscribers stays under its memory bound
def _strings(text: str) -> tuple[str, ...]:
    """A stored JSON list of queries (lists share their profiles: each distinct one decoded once)."""
    return tuple(json.loads(text))


def subscriber(row: Sequence) -> Subscriber:  # type: ignore[type-arg]
    extra = json.loads(row[10]) if len(row) > 10 and row[10] else {}
    return Subscriber(email=row[0], name=row[1], keywords=_strings(row[2]), exclude=_strings(row[3]),
                      schedule=row[4], timezone=row[5], max_entries=row[6], min_upvotes=row[7],
                      send_empty=bool(row[8]), home="store", trending=int(extra.get("trending", 0)),
                      updates=bool(extra.get("updates", True)), must_include=tuple(extra.get("must_include", ())),
                      must_exclude=tuple(extra.get("must_exclude", ())), near_misses=bool(extra.get("near_misses")))
