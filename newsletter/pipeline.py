"""The one place that wires the stages: who is due -> build a batch -> commit it -> deliver it ->
record the outcomes, batch after batch. The rules live in their modules: standing.py (who receives),
issues.py (slots and windows), builder.py (selection and rendering), ledger.py (claims, leases,
transitions, backoff), delivery/ (SMTP and Maildir senders, in-run retries).

Memory stays bounded whatever the number of subscribers: one batch is built, committed and
delivered at a time. Durability: an issue is committed as pending (claimed by this process) before
its SMTP transaction and marked sent only after the 250; outcomes are committed in groups, so
after a crash at most the messages in flight plus one group could go out twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from newsletter import issues as issuelib
from newsletter.addresses import wire_form
from newsletter.builder import Builder, Built
from newsletter.credentials import PREVIEW_SECRET, Secrets
from newsletter.delivery import Job, Outcome, Sender, sender_for
from newsletter.errors import ConfigError
from newsletter.issues import Due, NotDue, Slots
from newsletter.ledger import CLAIM_LEASE, Clock, Ledger, wall_clock
from newsletter.message import sender_address
from newsletter.models import Config
from newsletter.roster import Roster
from newsletter.standing import standing
from newsletter.store import Store

BATCH = 500  # subscribers per batch: built, committed in one transaction, then delivered
NOT_DUE_KEPT = 1000  # reasons kept in a report (the rest are counted)


@dataclass
class SendReport:
    built: int = 0
    empty: list[tuple[str, str]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    retrying: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    expired: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None
    skipped: list[NotDue] = field(default_factory=list)
    not_due: int = 0
    lost_claims: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage: due, build, record, deliver

    def timed(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - since
        return now

    def skip(self, items: Sequence[NotDue]) -> None:
        self.not_due += len(items)
        room = NOT_DUE_KEPT - len(self.skipped)
        if room > 0:
            self.skipped.extend(items[:room])


# --- who is due, in batches -----------------------------------------------------------------------

def due_batches(config: Config, store: Store, now: datetime, *, only: str | Collection[str] | None = None,
                group: tuple[str, str] | None = None, catch_up: timedelta | None = None, upcoming: bool = False,
                size: int = BATCH, share: tuple[int, int] | None = None) -> Iterator[tuple[list[Due], list[NotDue]]]:
    """Walk the roster in batches; for each, the issues to build now and why the others are not due.

    `upcoming` (previews): when the current slot's issue exists already, the next slot's issue is
    built as it would be now. `share` (k, n): only every n-th batch from the k-th (build worker k of
    n), the others not looked at.
    """
    roster = Roster(config, store)
    if isinstance(only, str):
        if roster.find(only) is None:
            raise ConfigError(f"no subscriber '{only}' in {config.path} or the state store")
        only = [only]
    slots = Slots(now)
    for page in roster.subscriber_batches(size, only=only, group=group, share=share):
        members = roster.with_standing(page)
        subs = [m.subscriber for m in members]
        standings = {m.subscriber.email: m.standing for m in members}
        due_slots = {s.email: slot for s in subs
                     if standings[s.email].active and (slot := slots.due(s)) is not None}
        heads = store.heads(due_slots)
        if upcoming:  # the current slot's issue exists: look at the next slot instead
            later = {e: nxt for s in subs if (e := s.email) in heads and heads[e].existing is not None
                     and (nxt := slots.next_after(s, due_slots[e])) is not None}
            due_slots.update(later)
            heads.update(store.heads(later))
        yield issuelib.sort_due(subs, standings, due_slots, heads, slots, catch_up=catch_up)


# --- previews and dry runs: build without writing -------------------------------------------------

def upcoming(config: Config, store: Store, now: datetime, *, secrets: Secrets,
             only: str | Collection[str] | None = None) -> tuple[list[Built], list[NotDue]]:
    """The next issue of every (or the named) subscriber, built now and written nowhere; links are
    signed with the preview secret, never the production one."""
    builder = Builder(config, store, now, link_secret=PREVIEW_SECRET, dkim_key=secrets.dkim_key)
    built: list[Built] = []
    not_due: list[NotDue] = []
    for due, skipped in due_batches(config, store, now, only=only, upcoming=True):
        built.extend(builder.build(due))
        not_due.extend(skipped)
    return built, not_due


def plan(config: Config, store: Store, now: datetime, *, only: str | Collection[str] | None = None,
         secret: str | None = None, catch_up: timedelta | None = None,
         upcoming: bool = False) -> tuple[list[Built], list[NotDue]]:
    """Every issue due at `now`, built in memory and written nowhere (small lists and tests)."""
    builder = Builder(config, store, now, link_secret=secret or PREVIEW_SECRET)
    built: list[Built] = []
    not_due: list[NotDue] = []
    for due, skipped in due_batches(config, store, now, only=only, catch_up=catch_up, upcoming=upcoming):
        built.extend(builder.build(due))
        not_due.extend(skipped)
    return built, not_due


# --- sending ----------------------------------------------------------------------------------------

def send(config: Config, store: Store, now: datetime, *, secrets: Secrets,
         only: str | Collection[str] | None = None, group: tuple[str, str] | None = None,
         outbox: Path | None = None, progress: Callable[[Outcome], None] | None = None,
         catch_up: timedelta | None = None, should_stop: Callable[[], bool] | None = None,
         clock: Clock = wall_clock, lease: timedelta = CLAIM_LEASE, batch: int = BATCH,
         owner: str | None = None, workers: int = 0) -> SendReport:
    """Build every due issue and deliver it, with the pending issues of earlier runs.

    `workers` > 0 builds batches in that many worker processes (big lists: every core works);
    0 builds them in a thread of this process."""
    if config.settings.base_url and not secrets.link_secret:
        raise ConfigError("NEWSLETTER_SECRET is not set: it signs the unsubscribe links "
                          "(newsletter.base_url is set); export it and run send again")
    builder = Builder(config, store, now, link_secret=secrets.link_secret or PREVIEW_SECRET,
                      dkim_key=secrets.dkim_key)
    ledger = Ledger(store, now=now, pause_after=config.settings.smtp.pause_after, clock=clock, lease=lease,
                    owner=owner)
    run = _Run(config, store, ledger, builder, progress, should_stop)
    run.workers, run.secrets = workers, secrets
    try:
        asyncio.run(run.main(now, only, group, catch_up, outbox, batch))
    finally:
        ledger.release()
    report = run.report
    report.retrying = [(e, t) for e, t in run.transient.values()]
    report.lost_claims = len(ledger.lost)
    for email in ledger.paused:
        report.failed.append((email, "subscriber paused after repeated permanent failures"))
    return report


class _Run:
    """One `send`: the state that lives while batches go through."""

    def __init__(self, config: Config, store: Store, ledger: Ledger, builder: Builder,
                 progress: Callable[[Outcome], None] | None, should_stop: Callable[[], bool] | None) -> None:
        self.config, self.store, self.ledger, self.builder = config, store, ledger, builder
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.report = SendReport()
        self.transient: dict[str, tuple[str, str]] = {}
        self.sender_address = sender_address(config.settings)
        self.sender: Sender | None = None
        self.workers = 0
        self.secrets = Secrets()

    def stopping(self) -> bool:
        return self.should_stop() or self.report.stopped is not None

    def on_outcome(self, outcome: Outcome) -> None:
        result = self.ledger.outcome(outcome)
        if result.status == "sent":
            self.transient.pop(outcome.issue_id, None)
            self.report.sent.append(outcome.recipient)
        elif result.status == "failed":
            self.transient.pop(outcome.issue_id, None)
            self.report.failed.append((outcome.recipient, outcome.text))
        else:
            self.transient[outcome.issue_id] = (outcome.recipient, outcome.text)
        if self.progress:
            self.progress(outcome)

    def job(self, issue_id: str, recipient: str, message: bytes) -> Job:
        return Job(issue_id, self.sender_address, recipient, message, wire_form(recipient))

    async def main(self, now: datetime, only: str | Collection[str] | None, group: tuple[str, str] | None,
                   catch_up: timedelta | None, outbox: Path | None, batch: int) -> None:
        """Leftovers first; then a producer thread builds and commits batch after batch (its own
        store connection) while this loop delivers the previous one: rendering, commits and SMTP
        overlap, and at most two batches are in memory. The sender's connections stay open for
        the whole run; retries that fall due join the next batch."""
        async with sender_for(self.config.settings.smtp, outbox, self.stopping, self.ledger.held) as sender:
            self.sender = sender
            t = time.perf_counter()
            await self.leftovers(only, batch)
            self.report.timed("leftovers", t)
            if self.workers > 0:
                await self.from_workers(now, only, group, catch_up, batch)
            else:
                loop = asyncio.get_running_loop()
                queue: asyncio.Queue[list[Job] | None] = asyncio.Queue(maxsize=1)
                producer = loop.run_in_executor(None, self.produce, loop, queue, now, only, group, catch_up, batch)
                while (jobs := await queue.get()) is not None:
                    t = time.perf_counter()
                    await self.deliver(jobs)
                    self.report.timed("deliver", t)
                await producer  # its exception, if any, is this run's
            t = time.perf_counter()
            await self.takeover(only, batch)
            self.report.timed("takeover", t)
        self.ledger.flush()  # outcomes of the retries sent on the way out

    async def takeover(self, only: str | Collection[str] | None, batch: int) -> None:
        """Before leaving: issues another worker claimed and will not deliver (it died) are finished in
        this run. Waits, at most one lease, for their leases to run out (the ledger says when a claim
        may be taken); a worker that keeps renewing keeps its claims and finishes them itself."""
        deadline = self.ledger.clock() + self.ledger.lease
        while not self.stopping():
            wait = self.ledger.takeover_wait(deadline)
            if wait is None:
                return
            if wait > 0:
                await asyncio.sleep(min(wait + 0.1, 5.0))
                continue
            if not await self.leftovers(only, batch):
                return  # what ran out is not due yet (a retry later): the next run takes it

    async def from_workers(self, now: datetime, only: str | Collection[str] | None,
                           group: tuple[str, str] | None, catch_up: timedelta | None, batch: int) -> None:
        """Worker processes build and commit the batches (newsletter/builders.py); this loop
        delivers each as it arrives."""
        from newsletter import builders

        task = builders.Task(self.config, self.store.path, self.secrets, now, only, group, catch_up, batch,
                             self.ledger.owner, self.ledger.lease)
        with builders.Workers(task, self.workers) as workers:
            async for item in workers.batches():
                for stage, seconds in item.stages.items():
                    self.report.stages[stage] = self.report.stages.get(stage, 0.0) + seconds
                self.report.skip(item.skipped)
                self.report.built += item.built
                self.report.empty.extend(item.empty)
                if self.stopping():
                    workers.stop()
                    continue
                t = time.perf_counter()
                await self.deliver([self.job(i, r, m) for i, r, m in item.jobs])
                self.report.timed("deliver", t)

    def produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[Job] | None], now: datetime,
                only: str | Collection[str] | None, group: tuple[str, str] | None, catch_up: timedelta | None,
                batch: int) -> None:
        report = self.report
        try:
            with self.store.reopen() as store:
                builder = self.builder.on(store)
                ledger = self.ledger.on(store)
                t = time.perf_counter()
                for due, skipped in due_batches(self.config, store, now, only=only, group=group,
                                                catch_up=catch_up, size=batch):
                    t = report.timed("due", t)
                    if self.stopping():
                        return
                    report.skip(skipped)
                    built = builder.build(due)
                    t = report.timed("build", t)
                    new = set(ledger.record([b.to_record() for b in built]))
                    t = report.timed("record", t)
                    report.built += len(new)
                    report.empty.extend((b.subscriber.email, b.reason) for b in built
                                        if not b.sends and b.issue.id in new)
                    jobs = [self.job(b.issue.id, b.subscriber.email, b.message) for b in built
                            if b.message is not None and b.issue.id in new]
                    asyncio.run_coroutine_threadsafe(queue.put(jobs), loop).result()
                    t = time.perf_counter()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    async def leftovers(self, only: str | Collection[str] | None, batch: int) -> int:
        """Pending issues of earlier runs (killed, or due for another attempt), page by page; how many
        were claimed."""
        subscribers = [only] if isinstance(only, str) else list(only) if only is not None else None
        seen: set[str] = set()
        roster = Roster(self.config, self.store)
        while not self.stopping():
            rows, expired = self.ledger.claim(batch, subscribers=subscribers, exclude=list(seen))
            self.report.expired.extend(expired)
            if not rows:
                break
            seen.update(r.id for r in rows)
            emails = sorted({r.subscriber for r in rows})
            states = self.store.states(emails)
            stale = []
            jobs = []
            for r in rows:
                sub = roster.find(r.subscriber)
                if sub is None or not (st := standing(sub, states.get(sub.email))).active:
                    why = "the subscriber was removed" if sub is None else st.reason
                    stale.append((r.id, f"not delivered: {why}"))
                    continue
                if r.message is None:  # never recorded so; a state copied while another process sent
                    why = "not delivered: its message bytes are missing from the state"
                    stale.append((r.id, why))
                    self.report.expired.append((r.subscriber, why))  # an anomaly: the run says so
                    continue
                jobs.append(self.job(r.id, r.subscriber, r.message))
            if stale:
                self.store.expire(stale)
            await self.deliver(jobs)
        return len(seen)

    async def deliver(self, jobs: Sequence[Job]) -> None:
        if not jobs or self.stopping() or self.sender is None:
            return
        held = self.ledger.held([j.issue_id for j in jobs])
        await self.sender.deliver([j for j in jobs if j.issue_id in held], self.on_outcome)
        if self.sender.halted:
            self.report.stopped = self.sender.halted
        self.ledger.flush()


def unsubscribe(store: Store, email: str, now: datetime) -> None:
    """One commit: the subscriber gets nothing from now on; subscribers.yaml is never rewritten."""
    from newsletter.addresses import normalise_address

    store.set_unsubscribed(normalise_address(email), now)


__all__ = ["BATCH", "SendReport", "due_batches", "plan", "send", "unsubscribe", "upcoming"]
