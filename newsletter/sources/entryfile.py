"""The project's own entry schema (`file`): JSON Lines, a JSON array, or YAML of entry objects.

These are exactly the objects `newsletter entries --json` prints, so an export can be re-ingested.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from newsletter.entries import arxiv_id, make_entry, parse_date
from newsletter.errors import SourceError
from newsletter.models import Entry, Links

_LINK_KEYS = ("page", "arxiv", "pdf", "code", "project")


def _objects(data: bytes, source: str) -> list[Any]:
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"source '{source}': invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if stripped.startswith("{"):
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SourceError(f"source '{source}': line {n}: invalid JSON: {exc.msg}") from exc
        return out
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError(f"source '{source}': invalid YAML: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("entries"), list):
        loaded = loaded["entries"]
    if not isinstance(loaded, list):
        raise SourceError(f"source '{source}': expected a list of entry objects")
    return loaded


def parse(data: bytes, *, source: str) -> list[Entry]:
    out = []
    for n, obj in enumerate(_objects(data, source), start=1):
        if not isinstance(obj, dict) or not isinstance(obj.get("title"), str) or not obj["title"].strip():
            raise SourceError(f"source '{source}': entry {n} needs at least a 'title' string")
        raw_links: dict[str, Any] = obj["links"] if isinstance(obj.get("links"), dict) else {}
        links = Links(**{k: raw_links.get(k) for k in _LINK_KEYS})
        if not links.as_dict() and isinstance(obj.get("url"), str):
            links = Links(page=obj["url"])
        given = obj.get("id") if isinstance(obj.get("id"), str) else None
        aid = arxiv_id(given) or arxiv_id(links.arxiv)
        authors = obj.get("authors") or []
        if isinstance(authors, str):
            authors = [a.strip() for a in authors.split(",")]
        entry = make_entry(
            title=obj["title"], abstract=str(obj.get("abstract") or ""), source=source, aid=aid,
            authors=[str(a) for a in authors], author_count=_int(obj.get("author_count")),
            published=parse_date(obj.get("published")), upvotes=_int(obj.get("upvotes")),
            comments=_int(obj.get("comments")),
            organization=obj.get("organization") if isinstance(obj.get("organization"), str) else None,
            links=links,
        )
        if given and not aid and given.startswith("t:"):
            from dataclasses import replace

            entry = replace(entry, id=given)
        out.append(entry)
    return out


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
