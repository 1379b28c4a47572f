"""Trending: the papers the community signals most, ranked by one documented rule (pure).

The rule: only papers with a community signal (an upvote count from Hugging Face Daily Papers,
0 included) can trend. They rank by upvotes, then comments, then the newer publication date, then
the id (so the order is total and deterministic). Papers from sources without such a signal
(arXiv listings, RSS/Atom feeds, files without `upvotes`) never trend: they reach a subscriber
through keywords only. A paper's rank ("#2 today") is its place among every signalled paper that
arrived in the issue's window, before anything is removed for this subscriber.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

from newsletter.matching import EntryIndex
from newsletter.models import Entry, Match
from newsletter.query import Query


def has_signal(entry: Entry) -> bool:
    return entry.upvotes is not None


def trend_key(entry: Entry) -> tuple[int, int, int, str]:
    """Sort key, best first: more upvotes, more comments, newer, then the id."""
    published = entry.published or date.min
    return (-(entry.upvotes or 0), -(entry.comments or 0), -published.toordinal(), entry.id)


def period_of(since: datetime, until: datetime) -> str:
    """How the rank's period reads: "today" for a daily issue, "this week" for a weekly one."""
    span = until - since
    if span <= timedelta(hours=36):
        return "today"
    if span <= timedelta(days=8):
        return "this week"
    return f"since {since:%Y-%m-%d}"


def reason(entry: Entry, rank: int, period: str) -> str:
    """"▲ 118 upvotes, #2 today" (with the comments when there are any)."""
    up = entry.upvotes or 0
    parts = [f"▲ {up} upvote{'' if up == 1 else 's'}"]
    if entry.comments:
        parts.append(f"{entry.comments} comment{'' if entry.comments == 1 else 's'}")
    parts.append(f"#{rank} {period}")
    return ", ".join(parts)


class Trending:
    """The signalled entries of an index in trending order, computed once per index."""

    def __init__(self, index: EntryIndex) -> None:
        self.index = index
        entries = index.entries
        self.order = sorted((i for i, e in enumerate(entries) if has_signal(e)), key=lambda i: trend_key(entries[i]))

    def ranked(self, window: int) -> Iterator[tuple[int, int]]:
        """(rank, entry index) of the signalled entries in `window` (a bitmask), best first."""
        rank = 0
        for i in self.order:
            if window >> i & 1:
                rank += 1
                yield rank, i

    def top(self, window: int, candidates: int, limit: int, *, period: str, min_upvotes: int = 0,
            skip: int = 0) -> list[Match]:
        """The best `limit` entries among `candidates` (minus `skip`), ranked within `window`;
        each Match carries its reason in `why` and its upvotes as the score."""
        out: list[Match] = []
        if limit <= 0:
            return out
        wanted = candidates & ~skip
        for rank, i in self.ranked(window):
            entry = self.index.entries[i]
            if not wanted >> i & 1 or (entry.upvotes or 0) < min_upvotes:
                continue
            out.append(Match(entry, float(entry.upvotes or 0), (), why=reason(entry, rank, period)))
            if len(out) >= limit:
                break
        return out


def top(entries: list[Entry], limit: int, *, period: str, min_upvotes: int = 0,
        exclude: tuple[Query, ...] = ()) -> list[Match]:
    """Convenience (`match --trending`): the trending top of these entries, minus the excluded."""
    index = EntryIndex(entries)
    excluded = 0
    for q in exclude:
        excluded |= index.query_mask(q)
    return Trending(index).top(index.all, index.all & ~excluded, limit, period=period, min_upvotes=min_upvotes)
