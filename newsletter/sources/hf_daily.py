"""The Hugging Face daily-papers JSON API (`hf-daily`): a JSON array of items with a `paper` object.

Only paper.id, title, summary and author names are relied on; everything else is optional, as the
schema drifts between API versions (see shared/data/hf_daily_papers/SCHEMA.md). An item whose fields
have the wrong type or an impossible value is skipped and reported.
"""

from __future__ import annotations

import json
from typing import Any

from newsletter.entries import arxiv_id, arxiv_links, make_entry
from newsletter.errors import ItemError, SourceError
from newsletter.models import Entry, Links, Parsed
from newsletter.sources import fields


def _entry(raw: Any, source: str) -> Entry | None:
    item = fields.obj(raw, "it")
    paper = fields.obj(item["paper"], "'paper'") if "paper" in item else item
    title = fields.text(paper, "title") or fields.text(item, "title")
    if title is None or not title.strip():
        raise ItemError("has no title")
    if paper.get("withdrawnAt"):
        return None
    given = paper.get("id")
    aid = arxiv_id(given) if isinstance(given, str) else None
    people = paper.get("authors")
    if people is not None and not isinstance(people, list):
        raise ItemError("'authors' is not a list")
    people = people or []
    authors = [a["name"] for a in people
               if isinstance(a, dict) and not a.get("hidden") and isinstance(a.get("name"), str)]
    org = item.get("organization") or paper.get("organization")
    organization = None
    if isinstance(org, dict):
        organization = _str(org.get("fullname")) or _str(org.get("name"))
    base = arxiv_links(aid) if aid else Links()
    links = Links(page=base.page, arxiv=base.arxiv, pdf=base.pdf,
                  code=_str(paper.get("githubRepo")), project=_str(paper.get("projectPage")))
    published = fields.day(paper, "publishedAt", strict=False) or fields.day(item, "publishedAt", strict=False)
    return make_entry(
        title=title, abstract=_str(paper.get("summary")) or _str(item.get("summary")) or "",
        source=source, aid=aid, authors=authors, author_count=len(people) or None, published=published,
        upvotes=fields.count(paper, "upvotes"), comments=fields.count(item, "numComments"),
        organization=organization, links=links,
    )


def _title(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return None
    paper = raw.get("paper")
    return paper.get("title") if isinstance(paper, dict) else raw.get("title")


def parse_all(data: bytes, *, source: str) -> Parsed:
    try:
        items = fields.load_json(data, source)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"source '{source}': not JSON ({exc})") from exc
    if isinstance(items, dict) and isinstance(items.get("papers"), list):
        items = items["papers"]
    if not isinstance(items, list):
        raise SourceError(f"source '{source}': expected a JSON array of daily papers")
    return fields.collect(source, items, lambda raw: _entry(raw, source), _title)


def parse(data: bytes, *, source: str) -> list[Entry]:
    return list(parse_all(data, source=source).entries)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
