"""Ingesting: read the configured sources (or paths/URLs given on the command line) into the store.

A failing source is recorded in the store and reported; it never stops the other sources. A bad item
is skipped and named in the report (and in the source's stored error, so `status` shows it); the
source's other items are ingested. URLs in names and messages are redacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter import sources
from newsletter.errors import SourceError
from newsletter.models import Config
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
        counts = store.upsert_entries(parsed.entries, now)
        reports.append(IngestReport(shown, counts["new"], counts["updated"], counts["unchanged"],
                                    skipped=_named(name, parsed.skipped)))
    return reports


def ingest_sources(store: Store, config: Config, now: datetime) -> list[IngestReport]:
    """Ingest every configured source. A failing source is recorded and reported, not raised."""
    reports = []
    for src in config.settings.sources:
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
        counts = store.upsert_entries(parsed.entries, now)
        store.record_fetch(src.name, now, entries=len(parsed.entries), etag=fetched.etag,
                           last_modified=fetched.last_modified)
        skipped = _named(src.name, parsed.skipped)
        if skipped:  # the fetch worked; the stored error tells `status` which items were refused
            store.record_fetch(src.name, now, error=skipped_summary(src.name, parsed.skipped))
        reports.append(IngestReport(src.name, counts["new"], counts["updated"], counts["unchanged"],
                                    skipped=skipped))
    return reports


def _named(source: str, skipped: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"source '{source}': {s}" for s in skipped)


__all__ = ["IngestReport", "ingest_paths", "ingest_sources", "skipped_summary"]
