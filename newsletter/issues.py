"""Pure issue logic: which slot is due, which entries arrived in an issue's window, the issue id.

A slot is due at T when it is the latest cron firing at or before T (subscriber's zone) and no
issue exists for it. An issue built at B holds what arrived after the previous issue was built
(a first issue: within one schedule period before B), never delivered before, that matches.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from newsletter.matching import EntryIndex, Profile
from newsletter.models import Issue, Subscriber
from newsletter.schedule import Schedule
from newsletter.standing import Standing
from newsletter.store import Head


def issue_id(email: str, slot: datetime) -> str:
    """Deterministic: the same subscriber and slot always give the same id."""
    digest = hashlib.sha256(f"{email}\n{slot.isoformat()}".encode()).hexdigest()
    return digest[:32]


def schedule_of(subscriber: Subscriber) -> Schedule:
    return Schedule(subscriber.schedule, subscriber.timezone)


def due_slot(subscriber: Subscriber, now: datetime) -> datetime | None:
    """The slot (UTC) an issue built at `now` belongs to: the latest firing at or before `now`."""
    return schedule_of(subscriber).latest_at_or_before(now)


def profile_of(subscriber: Subscriber) -> Profile:
    return Profile.from_strings(subscriber.keywords, subscriber.exclude, subscriber.min_upvotes)


def candidate_mask(index: EntryIndex, since: datetime, until: datetime, delivered: Iterable[str]) -> int:
    """Bitmask of entries first seen in (since, until] and never delivered to the subscriber."""
    skip = set(delivered)
    mask = 0
    for i, entry in enumerate(index.entries):
        seen = entry.first_seen
        if seen is not None and since < seen <= until and entry.id not in skip:
            mask |= 1 << i
    return mask


def build_issue(subscriber: Subscriber, slot: datetime, now: datetime, index: EntryIndex,
                since: datetime, delivered: Iterable[str], first: bool,
                profile: Profile | None = None) -> Issue:
    candidates = candidate_mask(index, since, now, delivered)
    matches = index.select(profile or profile_of(subscriber), candidates, limit=subscriber.max_entries)
    return Issue(id=issue_id(subscriber.email, slot), subscriber=subscriber, slot=slot,
                 built_at=now, matches=tuple(matches), first=first)


def expires_at(subscriber: Subscriber, slot: datetime) -> datetime | None:
    """An issue not delivered by an hour after the next slot is expired, never sent late."""
    nxt = _next_slot(subscriber.schedule, subscriber.timezone, slot)
    return nxt + timedelta(hours=1) if nxt is not None else None


@lru_cache(maxsize=1024)  # every subscriber of a slot with the same schedule and zone shares it
def _next_slot(schedule: str, zone: str, slot: datetime) -> datetime | None:
    return Schedule(schedule, zone).next_after(slot)


@dataclass(frozen=True)
class Due:
    """An issue to build now: the subscriber, its slot, and the window its entries arrived in."""

    subscriber: Subscriber
    slot: datetime
    since: datetime
    first: bool


@dataclass(frozen=True)
class NotDue:
    subscriber: Subscriber
    reason: str


class Slots:
    """Slot arithmetic shared by every subscriber with the same (cron, zone): computed once."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._due: dict[tuple[str, str], datetime | None] = {}
        self._period: dict[tuple[str, str, datetime], timedelta] = {}

    def due(self, sub: Subscriber) -> datetime | None:
        key = (sub.schedule, sub.timezone)
        if key not in self._due:
            self._due[key] = due_slot(sub, self.now)
        return self._due[key]

    def next_after(self, sub: Subscriber, slot: datetime) -> datetime | None:
        return _next_slot(sub.schedule, sub.timezone, slot)

    def period_before(self, sub: Subscriber, slot: datetime) -> timedelta:
        key = (sub.schedule, sub.timezone, slot)
        if key not in self._period:
            self._period[key] = schedule_of(sub).period_before(slot)
        return self._period[key]


def sort_due(subscribers: Sequence[Subscriber], standings: Mapping[str, Standing],
             due_slots: Mapping[str, datetime], heads: Mapping[str, Head], slots: Slots, *,
             catch_up: timedelta | None = None) -> tuple[list[Due], list[NotDue]]:
    """Which of these subscribers have an issue to build at `slots.now`, and why the others not.

    `due_slots` holds each active subscriber's slot (normally `slots.due(subscriber)`) and `heads`
    their ledger at that slot.
    `catch_up` (the `run` service): a subscriber who already had issues gets a missed slot only if
    it is at most this old, so a long downtime sends one recent issue, not a stale one.
    """
    now = slots.now
    due: list[Due] = []
    not_due: list[NotDue] = []
    for sub in subscribers:
        st = standings[sub.email]
        if not st.active:
            not_due.append(NotDue(sub, st.reason))
            continue
        slot = due_slots.get(sub.email)
        head = heads.get(sub.email)
        if slot is None or head is None:
            not_due.append(NotDue(sub, "the schedule has not fired yet"))
            continue
        if head.existing is not None:
            not_due.append(NotDue(sub, f"the issue for {slot:%Y-%m-%d %H:%M} UTC exists ({head.existing})"))
            continue
        if catch_up is not None and head.previous_built_at is not None and now - slot > catch_up:
            not_due.append(NotDue(sub, f"slot {slot:%Y-%m-%d %H:%M} UTC is older than the catch-up window"))
            continue
        if head.previous_built_at is not None:
            due.append(Due(sub, slot, head.previous_built_at, False))
        else:
            due.append(Due(sub, slot, now - slots.period_before(sub, slot), True))
    return due, not_due


class Window:
    """Candidate masks of an entry index: entries first seen in (since, until], cached per `since`
    (every subscriber due at one slot shares a handful of windows)."""

    def __init__(self, index: EntryIndex, until: datetime) -> None:
        self.index = index
        seen = [(e.first_seen, i) for i, e in enumerate(index.entries) if e.first_seen is not None]
        seen.sort()
        self._times = [t for t, _ in seen]
        self._order = [i for _, i in seen]
        self._upto = bisect.bisect_right(self._times, until)
        self._bit = {e.id: 1 << i for i, e in enumerate(index.entries)}
        self._cache: dict[datetime, int] = {}

    def mask(self, since: datetime, delivered: Iterable[str] = ()) -> int:
        mask = self._cache.get(since)
        if mask is None:
            mask = 0
            for i in self._order[bisect.bisect_right(self._times, since):self._upto]:
                mask |= 1 << i
            self._cache[since] = mask
        for entry_id in delivered:
            mask &= ~self._bit.get(entry_id, 0)
        return mask
