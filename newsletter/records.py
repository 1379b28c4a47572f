"""Small JSON records kept in the store through its existing API: per-day fetch records of a source
and the log of changes to stored papers.

Until the store has tables of its own for them, each record is the `etag` value of a row of the
`sources` table whose name starts with `~` (a name no configured source can have: `status` hides
these rows). Every record is bounded: days older than the catch-up window and changes older than
CHANGES_KEPT are dropped when it is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from newsletter.store import Store

PREFIX = "~"
CHANGES = "~changes"
CHANGES_KEPT = timedelta(days=30)
DAYS_KEPT = 31


def is_record(source_name: str) -> bool:
    return source_name.startswith(PREFIX)


def _read(store: Store, key: str) -> Any:
    row = store.source(key)
    if row is None or not row.etag:
        return None
    try:
        return json.loads(row.etag)
    except ValueError:
        return None  # written by something else: start again


def _write(store: Store, key: str, value: Any, now: datetime) -> None:
    store.record_fetch(key, now, etag=json.dumps(value, sort_keys=True, separators=(",", ":")))


# --- per-day fetch records --------------------------------------------------------------------------

@dataclass(frozen=True)
class Day:
    """What one fetch of one day's list found."""

    state: str  # ok | empty (no list that day) | failed
    papers: int = 0
    etag: str | None = None
    at: str = ""  # when it was fetched (ISO)
    error: str | None = None


@dataclass
class SourceDays:
    """A source's days, and when it may be asked again after a rate limit or a used-up budget."""

    days: dict[str, Day] = field(default_factory=dict)
    retry_at: str | None = None  # ISO time
    note: str | None = None  # why days are still missing ("rate limited", "request budget used")

    def day(self, when: date) -> Day | None:
        return self.days.get(when.isoformat())


def days_key(source: str) -> str:
    return f"{PREFIX}days:{source}"


def load_days(store: Store, source: str) -> SourceDays:
    raw = _read(store, days_key(source))
    if not isinstance(raw, dict):
        return SourceDays()
    days = {k: Day(**v) for k, v in (raw.get("days") or {}).items() if isinstance(v, dict)}
    return SourceDays(days, raw.get("retry_at"), raw.get("note"))


def save_days(store: Store, source: str, record: SourceDays, now: datetime) -> None:
    oldest = (now.date() - timedelta(days=DAYS_KEPT)).isoformat()
    days = {k: asdict(v) for k, v in sorted(record.days.items()) if k >= oldest}
    _write(store, days_key(source), {"days": days, "retry_at": record.retry_at, "note": record.note}, now)


# --- changes to stored papers ---------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """A stored paper changed: it gained a code link, a new arXiv version, or a community signal."""

    id: str
    title: str
    url: str | None
    kind: str  # code | version | trending
    detail: str
    at: str  # ISO time of the ingest that saw it


def load_changes(store: Store) -> list[Change]:
    raw = _read(store, CHANGES)
    if not isinstance(raw, list):
        return []
    return [Change(**c) for c in raw if isinstance(c, dict)]


def add_changes(store: Store, changes: list[Change], now: datetime) -> None:
    """Append changes (one per paper, kind and detail: a fetch seen again adds nothing)."""
    if not changes:
        return
    kept = [c for c in load_changes(store) if datetime.fromisoformat(c.at) > now - CHANGES_KEPT]
    seen = {(c.id, c.kind, c.detail) for c in kept}
    for c in changes:
        if (c.id, c.kind, c.detail) not in seen:
            seen.add((c.id, c.kind, c.detail))
            kept.append(c)
    _write(store, CHANGES, [asdict(c) for c in kept], now)
