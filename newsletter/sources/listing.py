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
from newsletter.errors import ItemError, SourceError
from newsletter.models import Entry, Parsed
from newsletter.sources import fields

_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DATE = re.compile(r"^(?P<mon>[A-Z][a-z]{2})[a-z]*\.? (?P<day>[0-9]{1,2})(?:, (?P<year>[0-9]{4}))?(?: (?P<up>[0-9]+))?$")
_AUTHORS = re.compile(r"^[•·*-]?\s*([0-9]+) authors?$")
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


def _number(name: str, digits: str) -> int:
    if len(digits) > 19:  # over 2**63-1 (and int() refuses over 4,300 digits)
        raise ItemError(f"'{name}' has {len(digits)} digits, not a whole number from 0 to {2**63 - 1}")
    return int(digits)


def parse(data: bytes, *, source: str, today: date) -> list[Entry]:
    return list(parse_all(data, source=source, today=today).entries)


def parse_all(data: bytes, *, source: str, today: date) -> Parsed:
    text = fields.decode(data, source)
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
    papers: list[tuple[str, list[str], list[str]]] = []
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
        meta: list[str] = []
        if i < len(blocks) and _is_meta(blocks[i]):
            meta = blocks[i]
            i += 1
        papers.append((title, paragraphs, meta))

    def build(paper: tuple[str, list[str], list[str]]) -> Entry:
        title, paragraphs, meta = paper
        if not paragraphs:
            raise ItemError("has no abstract")
        found: dict[str, Any] = {}
        for line in meta:
            line = line.strip()
            if a := _AUTHORS.match(line):
                found["author_count"] = _number("author_count", a.group(1))
            elif d := _DATE.match(line):
                found["published"] = _resolve(d["mon"], int(d["day"]), d["year"], page_date)
                if d["up"]:
                    found["upvotes"] = _number("upvotes", d["up"])
        return make_entry(title=title, abstract="\n\n".join(paragraphs), source=source, **found)

    try:
        return fields.collect(source, papers, build, lambda paper: paper[0], noun="paper")
    except SourceError as exc:  # not one paper with an abstract: probably not a listing at all
        raise SourceError(f"{exc} (is this a Daily Papers listing? use --format to choose another)") from None
