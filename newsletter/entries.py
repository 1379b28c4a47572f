"""Entry identity and shape: canonical ids, merging two sightings of one paper, the JSON schema."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from urllib.parse import urlparse

from newsletter.errors import ItemError
from newsletter.models import Entry, Links
from newsletter.text import clean_text, visible, words

# SQLite stores INTEGER in 64 bits: a count outside this range is refused while parsing.
MAX_COUNT = 2**63 - 1

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


def is_item_id(entry_id: str) -> bool:
    return entry_id.startswith("u:")


def title_may_merge(a: str, b: str) -> bool:
    """Whether two entries with the same title may be one paper, judged by their ids.

    A title id (`t:`) merges with anything; a feed item (`u:`) merges with an arXiv paper but not
    with another feed item (two posts called "Weekly notes" stay two); two arXiv ids never merge.
    """
    if is_title_id(a) or is_title_id(b):
        return True
    return is_item_id(a) != is_item_id(b)


def _id_rank(entry_id: str) -> int:
    return 2 if is_title_id(entry_id) else 1 if is_item_id(entry_id) else 0


def item_id(guid: str | None, link: str | None, source: str) -> str | None:
    """Id for a feed item with no arXiv id: a hash of its guid (or link), never of its title.

    Distinct posts may share a title ("Weekly notes"); their guids differ. A guid that is not a URI
    (`42`) is only unique within its feed, so it is qualified by the source name.
    """
    key = (guid or "").strip()
    if key and ":" not in key:
        key = f"{source}#{key}"
    key = key or (link or "").strip()
    if not key:
        return None
    return "u:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def safe_url(value: Any) -> str | None:
    """Only absolute http(s) URLs survive: no javascript:, data: or relative links in any output."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > 4096 or any(c in value for c in " <>\"'`") or not value.isprintable():
        return None
    try:
        parsed = urlparse(value)
    except ValueError:  # "http://[::1" and other malformed hosts
        return None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return value


def arxiv_links(aid: str) -> Links:
    return Links(page=f"https://huggingface.co/papers/{aid}" if "/" not in aid else None,
                 arxiv=f"https://arxiv.org/abs/{aid}", pdf=f"https://arxiv.org/pdf/{aid}")


def make_entry(
    *, title: str, abstract: str = "", source: str, aid: str | None = None, key: str | None = None,
    **fields: Any,
) -> Entry:
    """Build a clean Entry: text cleaned, id canonical, links filtered to http(s).

    The id is the arXiv id, else `key` (a feed item's guid id), else a hash of the title. Raises
    ItemError for what no output can carry: a title with nothing visible, a count that is not a
    whole number from 0 to 2**63-1.
    """
    title = clean_text(title)
    if not visible(title):
        raise ItemError("its title is empty or invisible after cleaning")
    entry_id = aid or key or title_id(title)
    links = fields.pop("links", None) or (arxiv_links(aid) if aid else Links())
    links = Links(**{k: safe_url(v) for k, v in links.as_dict().items()})
    authors = tuple(a for a in (clean_text(a) for a in fields.pop("authors", ())) if a)
    for name in ("author_count", "upvotes", "comments"):
        fields[name] = check_count(name, fields.get(name))
    count = fields.pop("author_count")
    org = fields.pop("organization", None)
    return Entry(id=entry_id, title=title, abstract=clean_paragraphs(abstract), authors=authors,
                 author_count=count if count is not None else (len(authors) or None),
                 organization=clean_text(org) or None if org else None,
                 links=links, sources=(source,), **fields)


def check_count(name: str, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= MAX_COUNT:
        shown = str(value) if abs(value) < 10**30 else f"a number of about {value.bit_length() * 3 // 10} digits"
        raise ItemError(f"'{name}' is {shown}, not a whole number from 0 to {MAX_COUNT}")
    return value


def clean_paragraphs(text: str) -> str:
    """Abstract text: cleaned, with paragraph breaks (blank lines) kept as a single blank line."""
    paras = [clean_text(p) for p in re.split(r"\n\s*\n", text or "")]
    return "\n\n".join(p for p in paras if p)


def merge(old: Entry, new: Entry) -> Entry:
    """One paper seen twice: newer values win where present, sources and links accumulate."""
    links = Links(**{**old.links.as_dict(), **new.links.as_dict()})
    return replace(
        old,
        id=new.id if _id_rank(new.id) < _id_rank(old.id) else old.id,
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
