"""Ingesting: read the configured sources (or paths/URLs given on the command line) into the store.

A failing source is recorded in the store and reported; it never stops the other sources. A bad item
is skipped and named in the report (and in the source's stored error, so `status` shows it); the
source's other items are ingested. URLs in names and messages are redacted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from newsletter import records, sources, updates
from newsletter.entries import merge
from newsletter.errors import SourceError
from newsletter.models import Config, Entry, SourceConfig
from newsletter.records import Day
from newsletter.sources import daily
from newsletter.sources.fetch import fetch_url, read, read_path, redact_url
from newsletter.store import Store

SHOWN_SKIPS = 5  # skipped items named in the stored error; the report keeps them all


@dataclass(frozen=True)
class IngestReport:
    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None
    not_modified: bool = False
    skipped: tuple[str, ...] = ()  # "source 'x': item 3 ('Title'): 'upvotes' is ..., not ..."
    notes: tuple[str, ...] = ()  # "no list for 2026-11-29", "3 days left for the next run: ..."
    requests: int = 0  # HTTP requests made (by-date sources)


def skipped_summary(source: str, skipped: Sequence[str]) -> str:
    """One line naming the skipped items of a source (the first few, and how many in all)."""
    shown = "; ".join(skipped[:SHOWN_SKIPS])
    more = f"; and {len(skipped) - SHOWN_SKIPS} more" if len(skipped) > SHOWN_SKIPS else ""
    noun = "item" if len(skipped) == 1 else "items"
    return f"source '{source}': {len(skipped)} bad {noun} skipped: {shown}{more}"


def ingest_paths(store: Store, paths: Sequence[str], fmt: str | None, now: datetime) -> list[IngestReport]:
    """Ingest files or URLs given on the command line; any failure is an error for that path."""
    reports = []
    for target in paths:
        is_url = target.startswith(("http://", "https://"))
        shown = redact_url(target) if is_url else target
        try:
            if is_url:
                data = fetch_url(target, shown).data or b""
            else:
                data = read_path(Path(target), target)
            name = Path(shown.split("?", 1)[0]).name or shown if is_url else Path(target).name or target
            parsed = sources.parse_all(fmt or sources.detect(data, target), data, source=name,
                                       today=now.date())
        except SourceError as exc:
            reports.append(IngestReport(shown, error=str(exc)))
            continue
        counts = upsert(store, parsed.entries, now)
        reports.append(IngestReport(shown, counts["new"], counts["updated"], counts["unchanged"],
                                    skipped=_named(name, parsed.skipped)))
    return reports


def ingest_sources(store: Store, config: Config, now: datetime) -> list[IngestReport]:
    """Ingest every configured source. A failing source is recorded and reported, not raised."""
    reports = []
    for src in config.settings.sources:
        if daily.by_date(src):
            reports.append(ingest_days(store, src, now))
            continue
        cursor = store.source(src.name)
        try:
            fetched = read(src, etag=cursor.etag if cursor else None,
                           last_modified=cursor.last_modified if cursor else None)
            if fetched.data is None:
                store.record_fetch(src.name, now, entries=None)
                reports.append(IngestReport(src.name, not_modified=True))
                continue
            parsed = sources.parse_all(src.type, fetched.data, source=src.name, today=now.date())
        except SourceError as exc:
            store.record_fetch(src.name, now, error=str(exc))
            reports.append(IngestReport(src.name, error=str(exc)))
            continue
        counts = upsert(store, parsed.entries, now)
        store.record_fetch(src.name, now, entries=len(parsed.entries), etag=fetched.etag,
                           last_modified=fetched.last_modified)
        _note_day(store, src.name, now, len(parsed.entries))
        skipped = _named(src.name, parsed.skipped)
        if skipped:  # the fetch worked; the stored error tells `status` which items were refused
            store.record_fetch(src.name, now, error=skipped_summary(src.name, parsed.skipped))
        reports.append(IngestReport(src.name, counts["new"], counts["updated"], counts["unchanged"],
                                    skipped=skipped))
    return reports


def upsert(store: Store, entries: Sequence[Entry], now: datetime) -> dict[str, int]:
    """Store the entries, and log what changed in papers already stored (for "Updates")."""
    before = {e.id: old for e in entries if (old := store._find(e)) is not None}
    counts = store.upsert_entries(entries, now)
    found = []
    for e in entries:
        old = before.get(e.id)
        if old is not None:
            found.extend(updates.changes(old, replace(merge(old, e), new_version=e.new_version), now))
    records.add_changes(store, found, now)
    return counts


def _note_day(store: Store, source: str, now: datetime, papers: int) -> None:
    """A whole-listing source: what today's fetch found (an empty arXiv listing on a weekend)."""
    record = records.load_days(store, source)
    record.days[now.date().isoformat()] = Day("ok" if papers else "empty", papers, at=now.isoformat())
    records.save_days(store, source, record, now)


def ingest_days(store: Store, src: SourceConfig, now: datetime) -> IngestReport:
    """A by-date source: every unsettled day of its catch-up window, within its request budget."""
    record = records.load_days(store, src.name)
    if record.retry_at and now < datetime.fromisoformat(record.retry_at):
        return IngestReport(src.name, not_modified=True,
                            notes=(f"rate limited: not asking before {record.retry_at}",))
    result = daily.Fetcher(src).run(daily.days_to_fetch(now.date(), record, src.catch_up_days), record)
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    notes: list[str] = []
    skipped: list[str] = []
    errors: list[str] = []
    stamp = now.isoformat()
    for r in result.days:
        key = r.day.isoformat()
        old = record.days.get(key)
        if r.state == "not_modified" and old is not None:
            record.days[key] = replace(old, at=stamp)
            continue
        if r.state == "failed":
            record.days[key] = Day("failed", at=stamp, error=r.error)
            errors.append(f"{key}: {r.error}")
            continue
        if r.state == "empty":
            record.days[key] = Day("empty", 0, r.etag, stamp)
            notes.append(f"no list for {key}")
            continue
        try:
            parsed = sources.parse_all("hf-daily", json.dumps(r.items).encode(), source=src.name,
                                       today=now.date())
        except SourceError as exc:
            record.days[key] = Day("failed", at=stamp, error=str(exc))
            errors.append(f"{key}: {exc}")
            continue
        for k, v in upsert(store, parsed.entries, now).items():
            counts[k] += v
        skipped.extend(f"{key}: {s}" for s in parsed.skipped)
        record.days[key] = Day("ok", len(parsed.entries), r.etag, stamp)
    record.retry_at, record.note = None, None
    if result.stopped:
        wait = result.retry_after
        record.retry_at = (now + timedelta(seconds=wait)).isoformat() if wait else None
        record.note = f"{result.stopped}; {_days(result.left)} left for the next run"
        notes.append(record.note)
    records.save_days(store, src.name, record, now)
    if errors:
        store.record_fetch(src.name, now, error=f"source '{src.name}': " + "; ".join(errors))
    else:
        store.record_fetch(src.name, now, entries=sum(d.papers for d in record.days.values()))
        if skipped:
            store.record_fetch(src.name, now, error=skipped_summary(src.name, skipped))
    not_modified = bool(result.days) and all(r.state == "not_modified" for r in result.days)
    return IngestReport(src.name, counts["new"], counts["updated"], counts["unchanged"],
                        error="; ".join(errors) or None, not_modified=not_modified and not errors,
                        skipped=_named(src.name, skipped), notes=tuple(notes), requests=result.requests)


def _days(days: Sequence[date]) -> str:
    if not days:
        return "no day"
    shown = ", ".join(d.isoformat() for d in days[:3]) + (", ..." if len(days) > 3 else "")
    return f"{len(days)} day{'s' if len(days) != 1 else ''} ({shown})"


def _named(source: str, skipped: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"source '{source}': {s}" for s in skipped)


__all__ = ["IngestReport", "ingest_paths", "ingest_sources", "skipped_summary"]
