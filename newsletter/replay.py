"""Replay a profile change over the stored papers before it is saved: which papers the new profile
would gain and lose over a window, and the issues they would have gone into. Pure: papers,
profiles and a subscriber's issues in, a `Replay` out (`match --diff`, `subscribers set --dry-run`,
and the summary every keyword edit prints).

Papers are compared as matched (the profile selects them), before any cap: a cap would hide a gain
behind a paper that was sent anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.matching import EntryIndex, Profile
from newsletter.models import Entry
from newsletter.store import IssueRow

WINDOW_DAYS = 30


@dataclass(frozen=True)
class Moved:
    """One paper the change gains or loses, and the issue it would have gone into (None: none
    of the subscriber's issues covered its arrival, e.g. no subscriber or the next issue)."""

    entry: Entry
    issue: str | None


@dataclass(frozen=True)
class Replay:
    who: str  # the subscriber, or "" for queries alone
    added: tuple[Moved, ...]
    removed: tuple[Moved, ...]
    window: int  # stored papers in the window

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def lines(self) -> list[str]:
        head = f"{self.who}: " if self.who else ""
        if not self.changed:
            return [f"{head}no change over the {self.window} stored papers of the window"]
        out = [f"{head}+{len(self.added)} paper{'s' if len(self.added) != 1 else ''}, "
               f"\u2212{len(self.removed)} over the {self.window} stored papers of the window"]
        for sign, moved in (("+", self.added), ("\u2212", self.removed)):
            for m in moved:
                where = f"  (issue {m.issue})" if m.issue else ""
                out.append(f"  {sign} {m.entry.id}  {' '.join(m.entry.title.split())}{where}")
        return out


def _issue_for(entry: Entry, issues: Sequence[IssueRow]) -> str | None:
    """The first issue built after the paper arrived: the one whose window held it."""
    if entry.first_seen is None:
        return None
    for issue in issues:
        if issue.built_at >= entry.first_seen:
            return issue.id
    return None


def replay(entries: Sequence[Entry], old: Profile, new: Profile, since: datetime, *, who: str = "",
           issues: Sequence[IssueRow] = ()) -> Replay:
    """What changing `old` to `new` gains and loses among the papers first seen after `since`."""
    window = [e for e in entries if e.first_seen is not None and e.first_seen > since]
    index = EntryIndex(window)
    before = {m.entry.id: m.entry for m in index.select(old)} if old.keywords else {}
    after = {m.entry.id: m.entry for m in index.select(new)} if new.keywords else {}
    ordered = sorted(issues, key=lambda i: i.built_at)

    def moved(ids: set[str], pool: dict[str, Entry]) -> tuple[Moved, ...]:
        found = sorted((pool[i] for i in ids), key=lambda e: (e.first_seen or since, e.id))
        return tuple(Moved(e, _issue_for(e, ordered)) for e in found)

    return Replay(who, moved(set(after) - set(before), after), moved(set(before) - set(after), before), len(window))
