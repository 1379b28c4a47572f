"""A subscriber's standing: whether they receive digests, and if not, why. The one home of this rule.

The store holds the state (unsubscribed, paused by an editor or after repeated permanent failures,
bounced); subscribers.yaml may still declare `paused: true` / `unsubscribed: true` (files written by
earlier releases, or a pause an editor keeps in the file). Every reader of "is this subscriber
active?" (building issues, delivering pending ones, the scheduler's groups, `status`) asks here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from newsletter.models import Subscriber
from newsletter.store import StateRow

ACTIVE = "active"


@dataclass(frozen=True)
class Standing:
    state: str  # active | unsubscribed | bounced | paused
    reason: str  # a sentence for `status` and reports; "" when active

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


def standing(subscriber: Subscriber, row: StateRow | None) -> Standing:
    if (row is not None and row.unsubscribed_at is not None) or subscriber.unsubscribed:
        return Standing("unsubscribed", "unsubscribed: nothing is sent any more")
    if row is not None and row.bounced_at is not None:
        return Standing("bounced", f"suppressed: the address bounced on {row.bounced_at:%Y-%m-%d}")
    if subscriber.paused:
        return Standing("paused", "paused in the subscribers file (`newsletter subscribers resume` to resume)")
    if row is not None and row.paused_reason:
        return Standing("paused", row.paused_reason)
    return Standing(ACTIVE, "")


# --- pauses with an end date ----------------------------------------------------------------------
# "Pause until DAY": nothing is sent before DAY; the pause ends at 00:00 of DAY in the subscriber's
# time zone, and the first slot from then on gets one catch-up issue over the whole gap (the window
# of an issue starts where the previous one was built: newsletter/issues.py).

def pause_end(day: date, zone: str) -> datetime:
    """When a pause "until DAY" ends: 00:00 of that day in the subscriber's zone."""
    return datetime.combine(day, time(0, 0), tzinfo=ZoneInfo(zone))


def pause_over(end: datetime, now: datetime) -> bool:
    return now >= end


def until_reason(who: str, day: date, how_to_resume: str) -> str:
    """The reason `status` and the preference centre show for a pause with an end."""
    return f"paused by {who} until {day:%Y-%m-%d} ({how_to_resume})"
