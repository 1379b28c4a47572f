"""Pure issue logic: which slot is due, which entries arrived in an issue's window, the issue id.

A slot is due at T when it is the latest cron firing at or before T (subscriber's zone) and no
issue exists for it. An issue built at B holds what arrived after the previous issue was built
(a first issue: within one schedule period before B), never delivered before, that matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta

from newsletter.matching import EntryIndex, Profile
from newsletter.models import Issue, Subscriber
from newsletter.schedule import Schedule


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


def retry_delay(attempt: int, jitter: float) -> timedelta:
    """Exponential backoff for transient failures: 1, 2, 4 ... minutes, capped at one hour."""
    base = min(60.0, 2.0 ** max(0, attempt - 1))
    return timedelta(minutes=base * (1.0 + 0.25 * jitter))
