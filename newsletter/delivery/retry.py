"""In-run retries: a transient failure (4xx, a dropped or refused connection) is tried again within
the run, up to `retries` more times, after an exponential backoff with jitter (0.5-1 s, 1-2 s,
2-4 s ...). The same job is sent again, so the same bytes and the same Message-ID.

`Retrying` wraps any Sender and is one itself. In a streaming run a retry does not hold up the
batches: it waits in a queue and joins the first batch handed over after it is due; whatever is
still waiting when the run ends is delivered on the way out of `async with` (`drain`). Between
runs, ledger.py decides when a pending issue is tried again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from newsletter.delivery import Job, OnOutcome, Outcome, Sender


def backoff(retry: int, jitter: float) -> float:
    """Seconds to wait before retry number `retry` (1, 2, ...); `jitter` in [0, 1) spreads the
    retries of many jobs so they do not all come back at once."""
    return (2.0 ** (retry - 1)) * (0.5 + 0.5 * jitter)


@dataclass
class _Tracked:
    job: Job
    on_outcome: OnOutcome
    tries: int = 0
    due: float = 0.0


class Retrying:
    """A Sender that retries the transient failures of another Sender within the run.

    Every attempt's outcome reaches `on_outcome` (the ledger counts attempts); one that will be
    tried again carries `retry_in` (seconds). `held`, when given, is asked before each retry which
    of the issues this process still holds (a claim can be lost while a retry waits); the others
    are dropped. `clock`, `sleep` and `jitter` are injectable so the policy is testable without
    waiting.
    """

    def __init__(self, inner: Sender, retries: int, *, should_stop: Callable[[], bool] | None = None,
                 held: Callable[[Sequence[str]], Collection[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.inner = inner
        self.retries = retries
        self.should_stop = should_stop or (lambda: False)
        self.held = held
        self.clock, self.sleep, self.jitter = clock, sleep, jitter
        self.waiting: list[_Tracked] = []  # transient failures, in the order they fell due

    @property
    def halted(self) -> str | None:
        return self.inner.halted

    async def __aenter__(self) -> Retrying:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await self.drain()
        finally:
            await self.inner.__aexit__(exc_type, exc, tb)

    async def deliver(self, jobs: Sequence[Job], on_outcome: OnOutcome) -> None:
        """Deliver the batch, with the retries that are due by now."""
        fresh = [_Tracked(job, on_outcome) for job in jobs]
        ids = {t.job.issue_id for t in fresh}
        self.waiting = [t for t in self.waiting if t.job.issue_id not in ids]  # handed over again
        await self._round(self._due() + fresh)

    async def drain(self) -> None:
        """Wait for and deliver the retries still queued, until none is left, the run stops or the
        sender halts; what is left then stays pending for a later run."""
        while self.waiting and not self.should_stop() and self.inner.halted is None:
            wait = min(t.due for t in self.waiting) - self.clock()
            if wait > 0:
                await self.sleep(wait)
            await self._round(self._due())
        self.waiting.clear()

    def _due(self) -> list[_Tracked]:
        now = self.clock()
        due = [t for t in self.waiting if t.due <= now]
        self.waiting = [t for t in self.waiting if t.due > now]
        if due and self.held is not None:
            mine = self.held([t.job.issue_id for t in due])
            due = [t for t in due if t.job.issue_id in mine]
        return due

    async def _round(self, tracked: list[_Tracked]) -> None:
        if not tracked:
            return
        by_id = {t.job.issue_id: t for t in tracked}

        def report(outcome: Outcome) -> None:
            t = by_id[outcome.issue_id]
            t.tries += 1
            if not outcome.ok and not outcome.permanent and t.tries <= self.retries:
                delay = backoff(t.tries, self.jitter())
                t.due = self.clock() + delay
                self.waiting.append(t)
                outcome = replace(outcome, retry_in=delay)
            t.on_outcome(outcome)

        await self.inner.deliver([t.job for t in tracked], report)
