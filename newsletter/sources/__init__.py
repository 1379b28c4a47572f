"""Sources: format detection and dispatch to one pure parser per source type.

Each parser turns bytes into entries and never does I/O; reading files and fetching URLs lives in
`newsletter.sources.fetch`.
"""

from __future__ import annotations

from datetime import date

from newsletter.errors import SourceError
from newsletter.models import Entry
from newsletter.sources import entryfile, hf_daily, listing

FORMATS = ("hf-listing", "hf-daily", "arxiv", "feed", "file")


def detect(data: bytes, name: str = "") -> str:
    """Guess the format of `data` (name is a file name or URL, used as a hint)."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = head.lower()
    if head.startswith(b"<"):
        if b"arxiv" in lowered:
            return "arxiv"
        return "feed"
    if head.startswith(b"["):
        return "hf-daily" if b'"paper"' in data[:20000] else "file"
    if head.startswith(b"{"):
        return "file"
    if name.endswith((".yaml", ".yml", ".jsonl")):
        return "file"
    return "hf-listing"


def parse(kind: str, data: bytes, *, source: str, today: date) -> list[Entry]:
    if kind == "hf-listing":
        return listing.parse(data, source=source, today=today)
    if kind == "hf-daily":
        return hf_daily.parse(data, source=source)
    if kind == "file":
        return entryfile.parse(data, source=source)
    if kind in ("arxiv", "feed"):
        from newsletter.sources import feeds

        return feeds.parse(data, source=source, arxiv=kind == "arxiv")
    raise SourceError(f"source '{source}': unknown format '{kind}' (one of {', '.join(FORMATS)})")
