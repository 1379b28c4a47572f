"""A subscriber's standing: whether they receive digests, and if not, why. The one home of this rule.

The store holds the state (unsubscribed, paused by an editor or after repeated permanent failures,
bounced); subscribers.yaml may still declare `paused: true` / `unsubscribed: true` (files written by
earlier releases, or a pause an editor keeps in the file). Every reader of "is this subscriber
active?" (building issues, delivering pending ones, the scheduler's groups, `status`) asks here.
"""

from __future__ import annotations

from dataclasses import dataclass

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
