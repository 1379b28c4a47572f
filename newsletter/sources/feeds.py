"""RSS and Atom (`feed`, `arxiv`): feedparser does the XML; this maps items to entries.

arXiv's RSS puts `arXiv:ID Announce Type: new\nAbstract: ...` in the description; its API answers
a bad request with an `Error` entry whose id points at /api/errors: that is not a paper. An item
with no arXiv id is keyed by its guid (or link), never by its title alone.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import feedparser

from newsletter.entries import arxiv_id, arxiv_links, item_id, make_entry
from newsletter.errors import ItemError, SourceError
from newsletter.models import Entry, Links, Parsed
from newsletter.sources import fields

_TAGS = re.compile(r"<[^>]+>")
_ARXIV_PREAMBLE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*Abstract:\s*", re.S)
_REPLACED = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*replace")  # replace, replace-cross: a new version
_DECLARED = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")


def _plain(value: str) -> str:
    """Feed text may be escaped HTML: keep the words, drop the tags."""
    return _TAGS.sub(" ", value or "")


def as_utf8(data: bytes, source: str) -> bytes:
    """UTF-16/32 XML re-encoded as UTF-8 (feedparser reads a UTF-16 file as UTF-8 when its
    declaration says so, and finds nothing); any other bytes are left to feedparser's own sniffing."""
    if not fields.sniff(data).startswith(("utf-16", "utf-32")):
        return data
    text = fields.decode(data, source).lstrip("\ufeff")
    return _DECLARED.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8", "surrogatepass")


def _entry(item: Any, source: str, arxiv: bool) -> Entry | None:
    link = item.get("link") or ""
    guid = item.get("id") or ""
    if "/api/errors" in guid or "/api/errors" in link:
        return None
    title = _plain(item.get("title") or "")
    if not title.strip():
        raise ItemError("has no title")
    summary = item.get("summary") or ""
    if item.get("content"):
        summary = max((c.get("value", "") for c in item["content"]), key=len, default=summary)
    abstract = _ARXIV_PREAMBLE.sub("", _plain(summary))
    aid = arxiv_id(guid) or arxiv_id(link) if (arxiv or "arxiv" in (link + guid)) else None
    links = arxiv_links(aid) if aid else Links(page=link or None)
    pdf = next((lk.get("href") for lk in item.get("links", []) if lk.get("type") == "application/pdf"
                or lk.get("title") == "pdf"), None)
    if pdf:
        links = Links(page=links.page or link, arxiv=links.arxiv, pdf=pdf)
    return make_entry(title=title, abstract=abstract, source=source, aid=aid,
                      key=None if aid else item_id(guid, link, source),
                      authors=_authors(item), published=_date(item), links=links,
                      new_version=bool(aid and _REPLACED.match(_plain(summary))))


def parse_all(data: bytes, *, source: str, arxiv: bool = False) -> Parsed:
    parsed = feedparser.parse(as_utf8(data, source))
    if parsed.bozo and not parsed.entries:
        raise SourceError(f"source '{source}': not a readable RSS/Atom feed ({parsed.bozo_exception})")
    return fields.collect(source, parsed.entries, lambda item: _entry(item, source, arxiv),
                          lambda item: _plain(item.get("title") or ""))


def parse(data: bytes, *, source: str, arxiv: bool = False) -> list[Entry]:
    return list(parse_all(data, source=source, arxiv=arxiv).entries)


def _authors(item: Any) -> list[str]:
    names = [a.get("name", "") for a in item.get("authors", []) if a.get("name")]
    if len(names) == 1 and "," in names[0]:
        names = [n.strip() for n in names[0].split(",")]
    return [n for n in names if n]


def _date(item: Any) -> date | None:
    for key in ("published_parsed", "updated_parsed"):
        t = item.get(key)
        if t:
            try:
                return date(t.tm_year, t.tm_mon, t.tm_mday)
            except ValueError:  # year 0 and other dates a feed can claim but no calendar has
                continue
    return None
