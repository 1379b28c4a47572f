"""Sources: format detection and dispatch to one pure parser per source type.

Each parser turns bytes into entries and never does I/O; reading files and fetching URLs lives in
`newsletter.sources.fetch`. `parse_all` also names the items it skipped and why.
"""

from __future__ import annotations

from datetime import date

from newsletter.errors import SourceError
from newsletter.models import Entry, Parsed
from newsletter.sources import entryfile, fields, hf_daily, listing

FORMATS = ("hf-listing", "hf-daily", "arxiv", "feed", "file")


def detect(data: bytes, name: str = "") -> str:
    """Guess the format of `data` (name is a file name or URL, used as a hint)."""
    encoding = fields.sniff(data)
    if encoding.startswith(("utf-16", "utf-32")):
        # 4096 characters' worth of bytes, cut on a character boundary
        width = 4 if encoding.startswith("utf-32") else 2
        head = data[: 4096 * width].decode(encoding, errors="replace").encode("utf-8")
        sample = data[: 20000 * width].decode(encoding, errors="replace").encode("utf-8")
    else:
        head, sample = data[:4096], data[:20000]
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = head.lower()
    if head.startswith(b"<"):
        if b"arxiv" in lowered:
            return "arxiv"
        return "feed"
    if head.startswith(b"["):
        return "hf-daily" if b'"paper"' in sample else "file"
    if head.startswith(b"{"):
        return "file"
    if name.endswith((".yaml", ".yml", ".jsonl")):
        return "file"
    return "hf-listing"


def parse_all(kind: str, data: bytes, *, source: str, today: date) -> Parsed:
    """Entries of one source, and the items skipped (each named, with the reason)."""
    if kind == "hf-listing":
        return listing.parse_all(data, source=source, today=today)
    if kind == "hf-daily":
        return hf_daily.parse_all(data, source=source)
    if kind == "file":
        return entryfile.parse_all(data, source=source)
    if kind in ("arxiv", "feed"):
        from newsletter.sources import feeds  # feedparser is slow to import; most runs need it once

        return feeds.parse_all(data, source=source, arxiv=kind == "arxiv")
    raise SourceError(f"source '{source}': unknown format '{kind}' (one of {', '.join(FORMATS)})")


def parse(kind: str, data: bytes, *, source: str, today: date) -> list[Entry]:
    return list(parse_all(kind, data, source=source, today=today).entries)
