"""The Daily Papers page saved as text (`hf-listing`): title, abstract paragraphs, metadata block.

A metadata block is `• N authors`, `·`, a date (`Jan 24, 2024` or `Oct 28`, with no year) and an
optional upvote count. Some papers have no metadata at all: the next title follows the abstract.
Dates without a year are the latest such date on or before the page date; the page date itself
(`Dec 29` near the top) is resolved against the day of ingest.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from newsletter.entries import make_entry
from newsletter.errors import SourceError
from newsletter.models import Entry

_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DATE = re.compile(r"^(?P<mon>[A-Z][a-z]{2})[a-z]*\.? (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?(?: (?P<up>\d+))?$")
_AUTHORS = re.compile(r"^[•·*-]?\s*(\d+) authors?$")
_CHROME = {"new", "get trending papers in your email inbox!", "subscribe", "daily papers",
           "byak and the research community"}


def _resolve(mon: str, day: int, year: str | None, before: date) -> date | None:
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    try:
        if year:
            return date(int(year), month, day)
        candidate = date(before.year, month, day)
        return candidate if candidate <= before else date(before.year - 1, month, day)
    except ValueError:
        return None


def _is_meta(block: list[str]) -> bool:
    return bool(block) and bool(_AUTHORS.match(block[0].strip()) or block[0].strip() == "·")


def _is_title(block: list[str], following: list[str] | None) -> bool:
    """A title is one short line that is followed by a longer paragraph (its abstract)."""
    if len(block) != 1 or len(block[0]) > 300 or block[0].endswith("."):
        return False
    return following is not None and not _is_meta(following) and len(" ".join(following)) > len(block[0])


def parse(data: bytes, *, source: str, today: date) -> list[Entry]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"source '{source}': not UTF-8 text ({exc})") from exc
    blocks = [[ln.strip() for ln in b.splitlines() if ln.strip()]
              for b in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))]
    blocks = [b for b in blocks if b]
    page_date = today
    i = 0
    while i < len(blocks) and (blocks[i][0].lower() in _CHROME or _DATE.match(blocks[i][0])):
        m = _DATE.match(blocks[i][0])
        if m and len(blocks[i]) == 1:
            page_date = _resolve(m["mon"], int(m["day"]), m["year"], today) or today
        i += 1
    entries: list[Entry] = []
    while i < len(blocks):
        title = blocks[i][0] if len(blocks[i]) == 1 else " ".join(blocks[i])
        i += 1
        paragraphs: list[str] = []
        while i < len(blocks) and not _is_meta(blocks[i]):
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            if paragraphs and _is_title(blocks[i], nxt):
                break
            paragraphs.append(" ".join(blocks[i]))
            i += 1
        fields: dict[str, Any] = {}
        if i < len(blocks) and _is_meta(blocks[i]):
            for line in blocks[i]:
                line = line.strip()
                if a := _AUTHORS.match(line):
                    fields["author_count"] = int(a.group(1))
                elif d := _DATE.match(line):
                    fields["published"] = _resolve(d["mon"], int(d["day"]), d["year"], page_date)
                    if d["up"]:
                        fields["upvotes"] = int(d["up"])
            i += 1
        if not paragraphs:
            raise SourceError(f"source '{source}': paper '{title[:60]}' has no abstract "
                              f"(is this a Daily Papers listing? use --format to choose another)")
        entries.append(make_entry(title=title, abstract="\n\n".join(paragraphs), source=source,
                                  **fields))
    return entries
