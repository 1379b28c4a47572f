"""The project's own entry schema (`file`): JSON Lines, a JSON array, or YAML of entry objects.

These are exactly the objects `newsletter entries --json` prints, so an export can be re-ingested.
YAML is read without aliases (a 400-byte alias bomb expands to gigabytes) and at most 64 levels deep.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor

from newsletter.entries import arxiv_id, make_entry
from newsletter.errors import ItemError, SourceError
from newsletter.models import Entry, Links, Parsed
from newsletter.sources import fields

_LINK_KEYS = ("page", "arxiv", "pdf", "code", "project")
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and deep nesting; odd scalars stay text for the item checks."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not allowed in entry files; "
                                "write each value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _lenient(construct: Any) -> Any:
    """A YAML 1.1 int or timestamp Python cannot build (5,000 digits, month 13) stays text."""
    def build(loader: _Loader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except ValueError:
            return loader.construct_scalar(node)
    return build


_Loader.add_constructor("tag:yaml.org,2002:int", _lenient(SafeConstructor.construct_yaml_int))
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _lenient(SafeConstructor.construct_yaml_timestamp))


def _objects(data: bytes, source: str) -> list[Any]:
    text = fields.decode(data, source).lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            loaded = fields.load_json(text, source)
        except json.JSONDecodeError as exc:
            raise SourceError(f"source '{source}': invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        if not isinstance(loaded, list):  # pragma: no cover - starts with "["
            raise SourceError(f"source '{source}': expected a list of entry objects")
        return loaded
    if stripped.startswith("{"):
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append(fields.load_json(line, source))
                except json.JSONDecodeError as exc:
                    raise SourceError(f"source '{source}': line {n}: invalid JSON: {exc.msg}") from exc
        return out
    try:
        loaded = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SourceError(f"source '{source}': invalid YAML{where}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:  # a reader error: a character YAML does not allow
        raise SourceError(f"source '{source}': invalid YAML: {' '.join(str(exc).split())}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("entries"), list):
        loaded = loaded["entries"]
    if not isinstance(loaded, list):
        raise SourceError(f"source '{source}': expected a list of entry objects")
    return loaded


def _entry(obj: Any, source: str) -> Entry:
    item = fields.obj(obj, "it")
    title = fields.text(item, "title")
    if title is None or not title.strip():
        raise ItemError("needs a 'title' string")
    raw_links = fields.obj(item["links"], "'links'") if item.get("links") is not None else {}
    links = Links(**{k: raw_links.get(k) for k in _LINK_KEYS})
    if not links.as_dict() and isinstance(item.get("url"), str):
        links = Links(page=item["url"])
    given = fields.text(item, "id")
    aid = arxiv_id(given) or arxiv_id(links.arxiv)
    # An exported entry keeps its id: a title id, or a feed item's guid id.
    key = given if given and not aid and given[:2] in ("t:", "u:") and len(given) == 18 else None
    return make_entry(
        title=title, abstract=fields.text(item, "abstract") or "", source=source, aid=aid,
        key=key,
        authors=fields.names(item, "authors", comma_string=True),
        author_count=fields.count(item, "author_count", digit_strings=True),
        published=fields.day(item, "published", strict=True),
        upvotes=fields.count(item, "upvotes", digit_strings=True),
        comments=fields.count(item, "comments", digit_strings=True),
        organization=fields.text(item, "organization"), links=links,
    )


def parse_all(data: bytes, *, source: str) -> Parsed:
    return fields.collect(source, _objects(data, source), lambda obj: _entry(obj, source),
                          lambda obj: obj.get("title") if isinstance(obj, dict) else None, noun="entry")


def parse(data: bytes, *, source: str) -> list[Entry]:
    return list(parse_all(data, source=source).entries)
