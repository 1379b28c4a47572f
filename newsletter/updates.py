"""Updates to papers readers received: what changed in a stored paper (pure), and which changes
belong in a subscriber's next issue.

A change is noticed at ingest, by comparing the stored paper with the new sighting: it gained a
code link, arXiv announced a new version, or it gained a community signal (it was picked up by
Hugging Face Daily Papers: it started trending). An issue built at B (its window starting at S)
carries the changes seen in (S, B] to papers the subscriber received before: each change appears
in exactly one issue, never as a new paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from newsletter.models import Entry, Links, Update
from newsletter.records import Change


def changes(old: Entry, new: Entry, now: datetime) -> list[Change]:
    """What a reader of `old` would want to hear about in `new` (the merged, stored paper)."""
    out = []

    def change(kind: str, detail: str) -> None:
        out.append(Change(new.id, new.title, new.url, kind, detail, now.isoformat()))

    if new.links.code and not old.links.code:
        change("code", f"code: {new.links.code}")
    if new.new_version:
        change("version", "a new version on arXiv")
    if new.upvotes is not None and old.upvotes is None:
        change("trending", f"now on Hugging Face Daily Papers, ▲ {new.upvotes} "
                           f"upvote{'' if new.upvotes == 1 else 's'}")
    return out


def in_window(log: Iterable[Change], since: datetime, until: datetime) -> list[Change]:
    return [c for c in log if since < datetime.fromisoformat(c.at) <= until]


def for_subscriber(log: Sequence[Change], since: datetime, until: datetime, received: set[str]) -> tuple[Update, ...]:
    """The updates of one issue: changes in (since, until] to papers in `received`, one line per
    paper (its changes joined), in the order they were seen."""
    by_id: dict[str, list[Change]] = {}
    for c in in_window(log, since, until):
        if c.id in received:
            by_id.setdefault(c.id, []).append(c)
    out = []
    for cs in by_id.values():
        last = cs[-1]
        entry = Entry(id=last.id, title=last.title, links=_links(last.url, cs))
        out.append(Update(entry, ",".join(dict.fromkeys(c.kind for c in cs)), "; ".join(c.detail for c in cs),
                          datetime.fromisoformat(last.at)))
    return tuple(out)


def _links(url: str | None, cs: Sequence[Change]) -> Links:
    code = next((c.detail.removeprefix("code: ") for c in cs if c.kind == "code"), None)
    return Links(page=url, code=code)

