"""The state store: entries, issues (the delivery ledger), source cursors, store-held subscribers and
every subscriber's state. The only SQL in the project.

`Store(location)` opens a SQLite file (a path) or a PostgreSQL database (a `postgresql://` URL);
both offer the same methods (newsletter/store/base.py holds the shared queries). Writes are grouped
into short transactions; the ledger row of an issue is committed as `pending` (with the exact
message bytes, claimed by the process that built it) before any SMTP transaction starts, and
becomes `sent` only after the server accepted it; its message bytes (kept apart from its row) are
deleted then, so a delivered issue costs its row and its papers' rows (~1.9 KB with 8 papers). The
schema is versioned per dialect (schema.py): `upgrade()` runs on every open, brings an older state
up to date and refuses a newer one.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.store.base import URL_SCHEMES, Store, is_url
from newsletter.store.rows import OPEN_STATUSES, Head, IssueRow, NewIssue, Result, SourceRow, StateRow
from newsletter.store.schema import SCHEMA_VERSION, TABLES
from newsletter.store.schema import SQLITE_V1 as _V1

class Url(str):
    """A postgresql:// URL given as the state. Like a Path it answers `exists()` (a database is
    always there to ask; opening it creates the schema), so code written for state files works."""

    def exists(self) -> bool:
        return True


Location = Path | Url  # a SQLite file, or a postgresql:// URL


def location(value: str | Path) -> Location:
    """A `--state` value or a `newsletter.state:` setting: a URL stays a string, anything else is a path.
    (A URL that went through Path() lost a slash of its `//`: it is given back.)"""
    text = str(value)
    for scheme in URL_SCHEMES:
        if text.startswith(scheme):
            return Url(text)
        if isinstance(value, Path) and text.startswith(scheme[:-1]):
            return Url(scheme + text[len(scheme) - 1:])
    return Path(value)


def describe(state: Location) -> str:
    """How to name a state in messages and `status`: the path, or the URL (which holds no password)."""
    return str(state)


def open_store(state: Location) -> Store:
    return Store(state)


__all__ = ["OPEN_STATUSES", "SCHEMA_VERSION", "TABLES", "Head", "IssueRow", "Location", "NewIssue", "Result",
           "SourceRow", "StateRow", "Store", "Url", "_V1", "describe", "is_url", "location", "open_store"]
