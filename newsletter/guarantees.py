"""Papers a profile must keep: a subscriber's `must_include` papers must stay selected by their
profile, their `must_exclude` papers must never be (regression tests for a lab's profiles). Pure:
subscribers and the stored papers in, one sentence per broken guarantee out, naming the paper and
the clause; `validate` and every edit refuse a profile with any (exit 2, nothing written).

"Selected" is the matcher's own verdict on the paper alone (a keyword query matches, no exclude
does, the upvotes reach min_upvotes), whatever the cap or the window of an issue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from newsletter.matching import EntryIndex, Profile, where_it_hits
from newsletter.models import Entry, Subscriber


def wanted(subscribers: Iterable[Subscriber]) -> set[str]:
    """Every paper id some guarantee names (to read them from the store in one go)."""
    return {i for s in subscribers for i in (*s.must_include, *s.must_exclude)}


def broken(sub: Subscriber, papers: Mapping[str, Entry]) -> list[str]:
    """Each guarantee of `sub` its profile breaks, as a sentence; [] when it keeps them all."""
    if not (sub.must_include or sub.must_exclude):
        return []
    out: list[str] = []
    profile = Profile.from_strings(sub.keywords, sub.exclude, sub.min_upvotes)
    for paper_id in sub.must_include:
        paper = papers.get(paper_id)
        if paper is None:
            out.append(f"{sub.email}: must_include {paper_id}: no such stored paper (ingest it first, or fix the id)")
            continue
        why = _why_not(paper, profile)
        if why:
            out.append(f"{sub.email} would lose {paper_id} (must_include, \u201c{_title(paper)}\u201d): {why}")
    for paper_id in sub.must_exclude:
        paper = papers.get(paper_id)
        if paper is None:
            out.append(f"{sub.email}: must_exclude {paper_id}: no such stored paper (ingest it first, or fix the id)")
            continue
        if not _why_not(paper, profile):
            alone = EntryIndex([paper])
            clause = next(q.text for q in profile.keywords if alone.query_mask(q))
            out.append(f"{sub.email} would receive {paper_id} (must_exclude, \u201c{_title(paper)}\u201d): "
                       f"matched by {clause}")
    return out


def _title(paper: Entry) -> str:
    return " ".join(paper.title.split())[:80]


def _why_not(paper: Entry, profile: Profile) -> str:
    """Why the profile does not select the paper alone; "" when it does."""
    alone = EntryIndex([paper])
    if not any(alone.query_mask(q) for q in profile.keywords):
        return "no keyword query matches it" if profile.keywords else "the profile has no keywords"
    for q in profile.exclude:
        if alone.query_mask(q):
            place = where_it_hits(alone, q, 0)
            where = f" ({place})" if place else ""
            return f"excluded by NOT {q.text}{where}"
    if (paper.upvotes or 0) < profile.min_upvotes:
        return f"{paper.upvotes or 0} upvotes, below min_upvotes {profile.min_upvotes}"
    return ""
