"""Near misses: papers of an issue's window that missed the profile by one clause, for the optional
line at the end of an issue (`near_misses: true` on a subscriber). Pure, on the builder's index.

A paper misses by one clause when
- a keyword query matches it and exactly one exclude removes it ("excluded by NOT title:survey"), or
- a keyword query is an AND and the paper meets every part of it but one ("lacks quantization,
  in "language model" AND quantization").
At most three, most upvoted first; never a paper the issue carries.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from newsletter.matching import EntryIndex, Profile
from newsletter.models import Entry
from newsletter.query import And, Node, Not, Or, Term

SHOWN = 3


@dataclass(frozen=True)
class NearMiss:
    entry: Entry
    clause: str  # what it missed by, as a reader reads it


def node_text(node: Node) -> str:
    """A query node written back as a query."""
    if isinstance(node, Term):
        return node.text
    if isinstance(node, Not):
        return f"NOT {node_text(node.child)}"
    joined = (" AND " if isinstance(node, And) else " OR ").join(node_text(c) for c in node.children)
    return f"({joined})" if isinstance(node, Or) else joined


def _bits(mask: int) -> list[int]:
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def near_misses(index: EntryIndex, profile: Profile, candidates: int, carried: Collection[str],
                limit: int = SHOWN) -> tuple[NearMiss, ...]:
    """Papers among `candidates` (a mask of `index`) that missed `profile` by one clause."""
    found: dict[int, str] = {}
    keyword = 0
    for q in profile.keywords:
        keyword |= index.query_mask(q)
    keyword &= candidates & index.upvote_mask(profile.min_upvotes)
    excludes = [(q, index.query_mask(q)) for q in profile.exclude]
    for k, (q, mask) in enumerate(excludes):
        others = 0
        for j, (_, m) in enumerate(excludes):
            if j != k:
                others |= m
        for i in _bits(keyword & mask & ~others):
            found.setdefault(i, f"excluded by NOT {q.text}")
    excluded = 0
    for _, m in excludes:
        excluded |= m
    selected = index.profile_mask(profile, candidates)
    for q in profile.keywords:
        if not isinstance(q.root, And):
            continue
        parts = q.root.children
        masks = [index.eval(c) for c in parts]
        for k, part in enumerate(parts):
            rest = candidates & ~masks[k] & ~excluded & ~selected & index.upvote_mask(profile.min_upvotes)
            for j, m in enumerate(masks):
                if j != k:
                    rest &= m
            for i in _bits(rest):
                found.setdefault(i, f"lacks {node_text(part)}, in {q.text}")
    misses = [NearMiss(index.entries[i], clause) for i, clause in found.items()
              if index.entries[i].id not in carried and not (selected >> i) & 1]
    misses.sort(key=lambda m: (-(m.entry.upvotes or 0), m.entry.id))
    return tuple(misses[:limit])
