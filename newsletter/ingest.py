"""Ingesting: read the configured sources (or paths/URLs given on the command line) into the store.

A failing source is recorded in the store and reported; it never stops the other sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter import sources
from newsletter.errors import SourceError
from newsletter.models import Config
from newsletter.sources.fetch import read, read_path
from newsletter.store import Store


@dataclass(frozen=True)
class IngestReport:
    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None
    not_modified: bool = False


def ingest_paths(store: Store, paths: Sequence[str], fmt: str | None, now: datetime) -> list[IngestReport]:
    """Ingest files or URLs given on the command line; any failure is an error for that path."""
    from newsletter.sources.fetch import fetch_url

    reports = []
    for target in paths:
        if target.startswith(("http://", "https://")):
            data = fetch_url(target, target).data or b""
        else:
            data = read_path(Path(target), target)
        kind = fmt or sources.detect(data, target)
        entries = sources.parse(kind, data, source=Path(target).name or target, today=now.date())
        counts = store.upsert_entries(entries, now)
        reports.append(IngestReport(target, counts["new"], counts["updated"], counts["unchanged"]))
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
            entries = sources.parse(src.type, fetched.data, source=src.name, today=now.date())
            counts = store.upsert_entries(entries, now)
            store.record_fetch(src.name, now, entries=len(entries), etag=fetched.etag,
                               last_modified=fetched.last_modified)
            reports.append(IngestReport(src.name, counts["new"], counts["updated"], counts["unchanged"]))
        except SourceError as exc:
            store.record_fetch(src.name, now, error=str(exc))
            reports.append(IngestReport(src.name, error=str(exc)))
    return reports


__all__ = ["IngestReport", "ingest_paths", "ingest_sources"]
