"""The Hugging Face daily-papers JSON API (`hf-daily`): a JSON array of items with a `paper` object.

Only paper.id, title, summary and author names are relied on; everything else is optional, as the
schema drifts between API versions (see shared/data/hf_daily_papers/SCHEMA.md).
"""

from __future__ import annotations

import json
from typing import Any

from newsletter.entries import arxiv_id, arxiv_links, make_entry, parse_date
from newsletter.errors import SourceError
from newsletter.models import Entry, Links


def parse(data: bytes, *, source: str) -> list[Entry]:
    try:
        items = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"source '{source}': not JSON ({exc})") from exc
    if isinstance(items, dict) and isinstance(items.get("papers"), list):
        items = items["papers"]
    if not isinstance(items, list):
        raise SourceError(f"source '{source}': expected a JSON array of daily papers")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise SourceError(f"source '{source}': item {n} is not an object")
        paper: dict[str, Any] = item["paper"] if isinstance(item.get("paper"), dict) else item
        title = paper.get("title") or item.get("title")
        if not isinstance(title, str) or not title.strip():
            raise SourceError(f"source '{source}': item {n} has no title")
        if paper.get("withdrawnAt"):
            continue
        aid = arxiv_id(str(paper.get("id") or ""))
        authors = [a.get("name", "") for a in paper.get("authors") or []
                   if isinstance(a, dict) and not a.get("hidden") and isinstance(a.get("name"), str)]
        org = item.get("organization") or paper.get("organization")
        base = arxiv_links(aid) if aid else Links()
        links = Links(page=base.page, arxiv=base.arxiv, pdf=base.pdf,
                      code=_str(paper.get("githubRepo")), project=_str(paper.get("projectPage")))
        out.append(make_entry(
            title=title, abstract=_str(paper.get("summary")) or _str(item.get("summary")) or "",
            source=source, aid=aid, authors=authors,
            author_count=len(paper.get("authors") or []) or None,
            published=parse_date(paper.get("publishedAt") or item.get("publishedAt")),
            upvotes=_int(paper.get("upvotes")), comments=_int(item.get("numComments")),
            organization=_str(org.get("fullname") or org.get("name")) if isinstance(org, dict) else None,
            links=links,
        ))
    return out


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
