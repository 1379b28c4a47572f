"""Entry identity and shape: canonical ids, merging two sightings of one paper, the JSON schema."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from urllib.parse import urlparse

from newsletter.models import Entry, Links
from newsletter.text import clean_text, words

_NEW_ID = re.compile(r"(?<![\w.])(\d{4}\.\d{4,5})(?:v\d+)?(?![\w.])")
_OLD_ID = re.compile(r"(?<![\w])([a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?(?!\d)")


def arxiv_id(text: str | None) -> str | None:
    """The arXiv id without version found in an id, URL or string (`2401.01234`, `astro-ph/0601001`)."""
    if not text:
        return None
    m = _NEW_ID.search(text) or _OLD_ID.search(text)
    return m.group(1) if m else None


def title_key(title: str) -> str:
    return " ".join(words(title))


def title_id(title: str) -> str:
    """Id for a paper with no known arXiv id: a hash of its normalised title."""
    return "t:" + hashlib.sha256(title_key(title).encode()).hexdigest()[:16]


def is_title_id(entry_id: str) -> bool:
    return entry_id.startswith("t:")


def safe_url(value: Any) -> str | None:
    """Only absolute http(s) URLs survive: no javascript:, data: or relative links in any output."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if any(c in value for c in "\r\n\t <>\"'`") or not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return value


def arxiv_links(aid: str) -> Links:
    return Links(page=f"https://huggingface.co/papers/{aid}" if "/" not in aid else None,
                 arxiv=f"https://arxiv.org/abs/{aid}", pdf=f"https://arxiv.org/pdf/{aid}")


def make_entry(
    *, title: str, abstract: str = "", source: str, aid: str | None = None, **fields: Any
) -> Entry:
    """Build a clean Entry: text cleaned, id canonical, links filtered to http(s)."""
    title = clean_text(title)
    entry_id = aid or title_id(title)
    links = fields.pop("links", None) or (arxiv_links(aid) if aid else Links())
    links = Links(**{k: safe_url(v) for k, v in links.as_dict().items()})
    authors = tuple(clean_text(a) for a in fields.pop("authors", ()) if clean_text(a))
    count = fields.pop("author_count", None)
    return Entry(id=entry_id, title=title, abstract=clean_paragraphs(abstract), authors=authors,
                 author_count=count if count is not None else (len(authors) or None),
                 links=links, sources=(source,), **fields)


def clean_paragraphs(text: str) -> str:
    """Abstract text: cleaned, with paragraph breaks (blank lines) kept as a single blank line."""
    paras = [clean_text(p) for p in re.split(r"\n\s*\n", text or "")]
    return "\n\n".join(p for p in paras if p)


def merge(old: Entry, new: Entry) -> Entry:
    """One paper seen twice: newer values win where present, sources and links accumulate."""
    links = Links(**{**old.links.as_dict(), **new.links.as_dict()})
    return replace(
        old,
        id=old.id if not is_title_id(old.id) else new.id,
        title=new.title or old.title,
        abstract=new.abstract if len(new.abstract) >= len(old.abstract) else old.abstract,
        authors=new.authors or old.authors,
        author_count=new.author_count if new.author_count is not None else old.author_count,
        published=old.published or new.published,
        upvotes=new.upvotes if new.upvotes is not None else old.upvotes,
        comments=new.comments if new.comments is not None else old.comments,
        organization=new.organization or old.organization,
        links=links,
        sources=tuple(dict.fromkeys(old.sources + new.sources)),
    )


def same_content(a: Entry, b: Entry) -> bool:
    keys = ("title", "abstract", "authors", "author_count", "published", "upvotes", "comments",
            "organization", "links", "sources")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def to_json(entry: Entry) -> dict[str, Any]:
    """The project's own entry schema: what `entries --json` prints and `file` sources read."""
    return {
        "id": entry.id,
        "title": entry.title,
        "abstract": entry.abstract,
        "authors": list(entry.authors),
        "author_count": entry.author_count,
        "published": entry.published.isoformat() if entry.published else None,
        "upvotes": entry.upvotes,
        "comments": entry.comments,
        "organization": entry.organization,
        "url": entry.url,
        "links": entry.links.as_dict(),
        "sources": list(entry.sources),
        "first_seen": entry.first_seen.isoformat() if entry.first_seen else None,
        "updated": entry.updated.isoformat() if entry.updated else None,
    }


def parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None
