"""The delivery ledger's rules: who may claim a pending issue, leases and their renewal, how
outcomes become ledger transitions (committed in groups), backoff, and expiry.

A process claims the issues it is about to deliver with a lease (`CLAIM_LEASE`) that it renews
while it works (`Ledger.renew`, at least every third of the lease), so a long `send` never loses its
claims; a claim is taken over only when its lease ran out, or its process on this host is gone.
Outcomes are committed in groups (`GROUP` outcomes or `GROUP_SECONDS`, whichever comes first, and at
the end): after a crash, at most the messages in flight plus one group were accepted by the server
without being recorded, which bounds duplicates.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from newsletter.delivery import Outcome
from newsletter.store import IssueRow, NewIssue, Result, Store

CLAIM_LEASE = timedelta(minutes=15)
GROUP = 256  # outcomes per commit at most ...
GROUP_SECONDS = 1.0  # ... and at least one commit per second while outcomes arrive
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


def process_owner(name: str | None = None) -> str:
    """`host:pid`, or `name:pid` for a named worker (whose claims come back only after their lease)."""
    return f"{name or socket.gethostname()}:{os.getpid()}"


LOCAL_GRACE = timedelta(hours=1)  # a live process on this host keeps its claims this long past its lease


def _alive_here(holder: str) -> bool | None:
    """For a process of this host: whether it runs; None for another host's (or a named worker's)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stealable(holder: str, until: datetime, now: datetime) -> bool:
    """A claim can be taken over when its process on this host is gone, or its lease ran out. A
    process that still runs here keeps its claims past its lease (it may be between renewals, or
    stopped in a debugger) until LOCAL_GRACE more has gone by (its pid may have been reused)."""
    alive = _alive_here(holder)
    if alive is False:
        return True
    if alive:
        return until + LOCAL_GRACE < now
    return until < now


def takeover_at(leases: dict[str, datetime]) -> datetime | None:
    """When the first claim another process holds may be taken over, from each holder's earliest
    lease end; None when no other process holds one."""
    ends = [until + LOCAL_GRACE if _alive_here(holder) else until for holder, until in leases.items()]
    return min(ends) if ends else None


def retry_delay(attempt: int, jitter: float) -> timedelta:
    """Backoff between runs for transient failures: 1, 2, 4 ... minutes, capped at one hour."""
    base = min(60.0, 2.0 ** max(0, attempt - 1))
    return timedelta(minutes=base * (1.0 + 0.25 * jitter))


def expiry_reason(row: IssueRow, now: datetime) -> str | None:
    """An issue still undelivered (after at least one attempt) when its next slot has passed is
    expired, not sent late."""
    if row.expires_at is None or row.attempts == 0 or now < row.expires_at:
        return None
    return (f"not delivered before the next slot ({row.expires_at - timedelta(hours=1):%Y-%m-%d %H:%M} UTC): "
            f"{row.last_error}")


class Ledger:
    """One process's view of the ledger: its claims, its leases, its buffered outcomes."""

    def __init__(self, store: Store, *, now: datetime, pause_after: int, owner: str | None = None,
                 clock: Clock = wall_clock, lease: timedelta = CLAIM_LEASE, group: int = GROUP) -> None:
        self.store = store
        self.now = now  # the run's "now": what issues are due, when retries are scheduled
        self.clock = clock  # real time: leases coordinate real processes
        self.owner = owner or process_owner()
        self.lease = lease
        self.group = group
        self.pause_after = pause_after
        self._results: list[Result] = []
        self._attempts: dict[str, int] = {}
        self._rng = random.Random()
        self._renewed = self.clock()
        self._flushed = time.monotonic()
        self.paused: list[str] = []
        self.lost: list[str] = []  # issues whose claim went to another process before delivery

    def on(self, store: Store) -> Ledger:
        """This process's ledger on another connection (the producer thread's): same owner, same lease."""
        return Ledger(store, now=self.now, pause_after=self.pause_after, owner=self.owner, clock=self.clock,
                      lease=self.lease, group=self.group)

    # --- claims ------------------------------------------------------------------------------

    def _until(self) -> datetime:
        return self.clock() + self.lease

    def record(self, issues: Sequence[NewIssue]) -> list[str]:
        """Commit built issues (pending ones claimed by this process); returns the new ids."""
        self._renewed = self.clock()
        return self.store.record_issues(issues, self.owner, self._until())

    def claim(self, limit: int, *, subscribers: Sequence[str] | None = None,
              exclude: Sequence[str] = ()) -> tuple[list[IssueRow], list[tuple[str, str]]]:
        """Claim pending issues due for an attempt; returns (claimed, expired as (subscriber, why))."""
        now = self.clock()
        rows = self.store.claim_pending(self.now, self.owner, self._until(), limit,
                                        lambda holder, until: stealable(holder, until, now),
                                        subscribers=subscribers, exclude=exclude)
        expired = [(r, why) for r in rows if (why := expiry_reason(r, self.now))]
        if expired:
            self.store.expire([(r.id, why) for r, why in expired])
        gone = {r.id for r, _ in expired}
        for r in rows:
            self._attempts[r.id] = r.attempts
        return [r for r in rows if r.id not in gone], [(r.subscriber, why) for r, why in expired]

    def renew(self, force: bool = False) -> None:
        """Extend this process's leases; cheap to call often (it writes at most every lease/3)."""
        now = self.clock()
        if force or now - self._renewed >= self.lease / 3:
            self.store.renew_claims(self.owner, now + self.lease)
            self._renewed = now

    def held(self, issue_ids: Sequence[str]) -> set[str]:
        """Of these issues, the ones this process may deliver now (renewing first if due)."""
        self.renew()
        held = self.store.holds(self.owner, issue_ids)
        self.lost.extend(i for i in issue_ids if i not in held)
        return held

    def takeover_wait(self, deadline: datetime) -> float | None:
        """Seconds until a claim another process holds may be taken over (0: now), or None when
        there is none to wait for before `deadline` (none held, or held by a process that renews)."""
        when = takeover_at(self.store.claim_leases(self.owner))
        if when is None or when > deadline:
            return None
        return max(0.0, (when - self.clock()).total_seconds())

    def release(self) -> None:
        self.flush()
        self.store.release_claims(self.owner)

    # --- outcomes ----------------------------------------------------------------------------

    def outcome(self, outcome: Outcome) -> Result:
        """Turn a delivery outcome into a ledger transition; committed with its group."""
        if outcome.ok:
            result = Result(outcome.issue_id, outcome.recipient, "sent",
                            possible_duplicate=outcome.possible_duplicate)
        elif outcome.permanent:
            result = Result(outcome.issue_id, outcome.recipient, "failed", outcome.text, outcome.code)
        else:
            attempts = self._attempts.get(outcome.issue_id, 0) + 1
            self._attempts[outcome.issue_id] = attempts
            result = Result(outcome.issue_id, outcome.recipient, "pending", outcome.text, outcome.code,
                            self.now + retry_delay(attempts, self._rng.random()), outcome.possible_duplicate)
        self._results.append(result)
        if len(self._results) >= self.group or time.monotonic() - self._flushed >= GROUP_SECONDS:
            self.flush()
        return result

    def flush(self) -> None:
        self._flushed = time.monotonic()
        if self._results:
            results, self._results = self._results, []
            self.paused.extend(self.store.record_results(results, self.now, self.owner, self.pause_after))
        self.renew()
