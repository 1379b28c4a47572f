"""Ratings -> proposed profile edits a reader can read. Pure.

A "less like this" proposes an exclude, a "more like this" a keyword, each a phrase (or word)
drawn from the rated paper's title that matches it and none of the papers rated the other way.
Each proposal comes with its effect replayed over the stored papers of the last 30 days: how many
papers the profile would have gained or lost, and whether the rated paper is among them.
Phrases that recur in a few papers are preferred (a topic), then rarer ones (just this paper).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from newsletter.links import LESS, MORE
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Entry, Subscriber
from newsletter.query import parse
from newsletter.store_readers import Rating

WINDOW = timedelta(days=30)
MAX_RATED = 3  # proposals for the most recent ratings of each kind
SHOWN = 3  # example titles shown per proposal
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
STOP = frozenset("""a an and are as at be by for from in into is it its of on or over the their this to
towards toward via with without we our new using use based large small model models learning
approach approaches method methods study towards paper data task tasks""".split())


@dataclass(frozen=True)
class Proposal:
    kind: str  # exclude | keywords (the list it is added to)
    query: str
    entry_id: str  # the rated paper
    because: str  # its title
    added: tuple[str, ...]  # titles the profile would gain over the window
    removed: tuple[str, ...]  # titles it would lose
    includes_rated: bool

    @property
    def effect(self) -> str:
        """`+4 papers, −2, including this one` over the last 30 days."""
        parts = []
        if self.added:
            parts.append(f"+{len(self.added)} paper{'s' if len(self.added) != 1 else ''}")
        if self.removed:
            parts.append(f"\u2212{len(self.removed)} paper{'s' if len(self.removed) != 1 else ''}"
                         if not parts else f"\u2212{len(self.removed)}")
        text = ", ".join(parts) or "no change"
        return text + (", including this one" if self.includes_rated else "")


def candidates(title: str) -> list[str]:
    """Queries drawn from a title: adjacent pairs of content words as phrases, then single words."""
    words = [w.strip("'-") for w in _WORD.findall(title)]
    content = [w for w in words if w and w.lower() not in STOP and len(w) > 2]
    phrases = []
    for a, b in zip(words, words[1:], strict=False):
        a, b = a.strip("'-"), b.strip("'-")
        if a.lower() not in STOP and b.lower() not in STOP and len(a) > 2 and len(b) > 2:
            phrases.append(f'"{a.lower()} {b.lower()}"')
    singles = [w.lower() for w in content if len(w) >= 5]
    return list(dict.fromkeys(phrases + singles))


def _wanted(query: str, sub: Subscriber) -> bool:
    """Whether the subscriber's own keywords ask for these words: never propose to exclude them."""
    words = EntryIndex([Entry(id="candidate", title=query.strip('"'))])
    return any(words.query_mask(parse(k)) for k in sub.keywords)


def _selected(index: EntryIndex, sub: Subscriber) -> set[int]:
    if not sub.keywords:  # a trending digest: every paper is a candidate, excludes take some away
        everything = (1 << len(index.entries)) - 1
        for q in sub.exclude:
            everything &= ~index.query_mask(parse(q))
        return set(_bits(everything))
    return set(_bits(index.profile_mask(Profile.from_strings(sub.keywords, sub.exclude, sub.min_upvotes))))


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def propose(sub: Subscriber, ratings: Sequence[Rating], window: Sequence[Entry], rated: dict[str, Entry]) -> list[Proposal]:
    """Proposals for the most recent ratings; `window` is the last 30 days of stored papers and
    `rated` the rated papers by id (they join the window if they are older)."""
    entries = list(window) + [e for i, e in rated.items() if i not in {w.id for w in window}]
    index = EntryIndex(entries)
    position = {e.id: n for n, e in enumerate(entries)}
    now_selected = _selected(index, sub)
    liked = {r.entry_id for r in ratings if r.verdict == MORE}
    disliked = {r.entry_id for r in ratings if r.verdict == LESS}
    existing = {q.lower() for q in (*sub.keywords, *sub.exclude)}
    out: list[Proposal] = []
    for verdict, limit in ((LESS, MAX_RATED), (MORE, MAX_RATED if sub.keywords else 0)):
        for r in [r for r in ratings if r.verdict == verdict][:limit]:
            paper = rated.get(r.entry_id)
            if paper is None:
                continue
            other = liked if verdict == LESS else disliked
            best: tuple[tuple[int, int], Proposal] | None = None
            for q in candidates(paper.title):
                if q.lower() in existing or (verdict == LESS and _wanted(q, sub)):
                    continue
                mask = index.query_mask(parse(q))
                hits = set(_bits(mask))
                if position[paper.id] not in hits or any(position[o] in hits for o in other if o in position):
                    continue
                if verdict == LESS:
                    after = now_selected - hits
                    kind = "exclude"
                else:
                    changed = replace(sub, keywords=(*sub.keywords, q))
                    after = _selected(index, changed)
                    kind = "keywords"
                proposal = Proposal(kind, q, paper.id, paper.title,
                                    tuple(entries[i].title for i in sorted(after - now_selected)),
                                    tuple(entries[i].title for i in sorted(now_selected - after)),
                                    position[paper.id] in (now_selected ^ after))
                size = len(hits)
                # a recurring topic (2+ papers, not a tenth of everything) first, then the rarest
                rank = (0 if 2 <= size <= max(2, len(entries) // 10) else 1, size if size >= 2 else 10**9)
                if best is None or rank < best[0]:
                    best = (rank, proposal)
            if best is not None:
                out.append(best[1])
    return out
