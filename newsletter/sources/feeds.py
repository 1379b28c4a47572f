"""RSS and Atom (`feed`, `arxiv`): feedparser does the XML; this maps items to entries.

arXiv's RSS puts `arXiv:ID Announce Type: new\nAbstract: ...` in the description; its API answers
a bad request with an `Error` entry whose id points at /api/errors: that is not a paper.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import feedparser

from newsletter.entries import arxiv_id, arxiv_links, make_entry
from newsletter.errors import SourceError
from newsletter.models import Entry, Links

_TAGS = re.compile(r"<[^>]+>")
_ARXIV_PREAMBLE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*Abstract:\s*", re.S)


def _plain(value: str) -> str:
    """Feed text may be escaped HTML: keep the words, drop the tags."""
    return _TAGS.sub(" ", value or "")


def parse(data: bytes, *, source: str, arxiv: bool = False) -> list[Entry]:
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise SourceError(f"source '{source}': not a readable RSS/Atom feed ({parsed.bozo_exception})")
    out = []
    for item in parsed.entries:
        link = item.get("link") or ""
        guid = item.get("id") or ""
        if "/api/errors" in guid or "/api/errors" in link:
            continue
        title = _plain(item.get("title") or "")
        if not title.strip():
            continue
        summary = item.get("summary") or ""
        if item.get("content"):
            summary = max((c.get("value", "") for c in item["content"]), key=len, default=summary)
        abstract = _ARXIV_PREAMBLE.sub("", _plain(summary))
        aid = arxiv_id(guid) or arxiv_id(link) if (arxiv or "arxiv" in (link + guid)) else None
        authors = _authors(item)
        links = arxiv_links(aid) if aid else Links(page=link or None)
        pdf = next((lk.get("href") for lk in item.get("links", []) if lk.get("type") == "application/pdf"
                    or lk.get("title") == "pdf"), None)
        if pdf:
            links = Links(page=links.page or link, arxiv=links.arxiv, pdf=pdf)
        out.append(make_entry(title=title, abstract=abstract, source=source, aid=aid,
                              authors=authors, published=_date(item), links=links))
    return out


def _authors(item: Any) -> list[str]:
    names = [a.get("name", "") for a in item.get("authors", []) if a.get("name")]
    if len(names) == 1 and "," in names[0]:
        names = [n.strip() for n in names[0].split(",")]
    return [n for n in names if n]


def _date(item: Any) -> date | None:
    for key in ("published_parsed", "updated_parsed"):
        t = item.get(key)
        if t:
            return date(t.tm_year, t.tm_mon, t.tm_mday)
    return None
