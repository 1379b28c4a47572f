"""The one place that wires the stages: ingest sources, build issues, record them, deliver them."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from newsletter import issues as issuelib
from newsletter import message as messagelib
from newsletter.addresses import wire_form
from newsletter.delivery import Job, Outcome
from newsletter.errors import ConfigError, DeliveryError
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Issue, Match, RenderedIssue, Subscriber
from newsletter.query import Query, parse
from newsletter.rendering import environment, render
from newsletter.store import Store

PREVIEW_SECRET = "preview-only: set NEWSLETTER_SECRET to sign real unsubscribe links"


# --- building issues ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """An issue that is due now, built (and rendered when there is something to send)."""

    subscriber: Subscriber
    issue: Issue
    rendered: RenderedIssue | None
    message: bytes | None
    reason: str  # why nothing goes out, or "" when it does

    @property
    def sends(self) -> bool:
        return self.message is not None


@dataclass(frozen=True)
class Skipped:
    subscriber: Subscriber
    reason: str


def _profiles(subscribers: Sequence[Subscriber]) -> dict[str, Profile]:
    cache: dict[str, Query] = {}

    def q(text: str) -> Query:
        if text not in cache:
            cache[text] = parse(text)
        return cache[text]

    return {s.email: Profile(tuple(map(q, s.keywords)), tuple(map(q, s.exclude)), s.min_upvotes)
            for s in subscribers}


def _chosen(config: Config, only: str | Collection[str] | None) -> list[Subscriber]:
    if only is None:
        return list(config.subscribers)
    if isinstance(only, str):
        chosen = config.subscriber(only)
        if chosen is None:
            raise ConfigError(f"no subscriber '{only}' in {config.path}")
        return [chosen]
    wanted = set(only)
    return [s for s in config.subscribers if s.email in wanted]


def plan(config: Config, store: Store, now: datetime, *, only: str | Collection[str] | None = None,
         secret: str | None = None, catch_up: timedelta | None = None,
         upcoming: bool = False) -> tuple[list[Planned], list[Skipped]]:
    """Build every issue due at `now` without writing anything.

    `upcoming` (previews): when the current slot's issue exists already, build the next slot's
    issue instead, as it would be if it were built now.

    `catch_up` (the `run` service): a subscriber who already had issues gets a missed slot only if
    it is at most this old, so a long downtime sends one recent issue, not a stale one.
    """
    subscribers = _chosen(config, only)
    unsubscribed = store.unsubscribed()
    paused = store.paused()
    skipped: list[Skipped] = []
    due: list[tuple[Subscriber, datetime, datetime, bool]] = []
    slots: dict[tuple[str, str], datetime | None] = {}  # subscribers share schedules
    periods: dict[tuple[str, str], timedelta] = {}
    for sub in subscribers:
        if sub.email in unsubscribed or sub.unsubscribed:
            skipped.append(Skipped(sub, "unsubscribed"))
            continue
        if sub.paused:
            skipped.append(Skipped(sub, f"paused in {config.path.name}"))
            continue
        if sub.email in paused:
            skipped.append(Skipped(sub, paused[sub.email]))
            continue
        key = (sub.schedule, sub.timezone)
        if key not in slots:
            slots[key] = issuelib.due_slot(sub, now)
        slot = slots[key]
        if slot is None:
            skipped.append(Skipped(sub, "the schedule has not fired yet"))
            continue
        existing = store.issue(issuelib.issue_id(sub.email, slot))
        if existing is not None and upcoming:
            slot = issuelib.schedule_of(sub).next_after(slot) or slot
            existing = store.issue(issuelib.issue_id(sub.email, slot))
        if existing is not None:
            skipped.append(Skipped(sub, f"the issue for {slot:%Y-%m-%d %H:%M} UTC exists ({existing.status})"))
            continue
        previous = store.last_issue(sub.email, before=slot)
        if catch_up is not None and previous is not None and now - slot > catch_up:
            skipped.append(Skipped(sub, f"slot {slot:%Y-%m-%d %H:%M} UTC is older than the catch-up window"))
            continue
        if previous is not None:
            since = previous.built_at
        else:
            if key not in periods:
                periods[key] = issuelib.schedule_of(sub).period_before(slot)
            since = now - periods[key]
        due.append((sub, slot, since, previous is None))
    if not due:
        return [], skipped
    index = EntryIndex(store.entries(since=min(d[2] for d in due), until=now))
    profiles = _profiles([d[0] for d in due])
    env = environment(config.settings.templates)
    cache: dict = {}  # type: ignore[type-arg]
    planned = []
    batched = _batch_select(index, due, profiles, now) if len(due) >= BATCH_FROM else {}
    for sub, slot, since, first in due:
        delivered = store.delivered_ids(sub.email)
        picked = batched.get(sub.email)
        if picked is not None and not any(m.entry.id in delivered for m in picked):
            issue = Issue(issuelib.issue_id(sub.email, slot), sub, slot, now, tuple(picked), first)
        else:  # the exact path: few subscribers, or an entry of the window was delivered before
            issue = issuelib.build_issue(sub, slot, now, index, since, delivered, first, profiles[sub.email])
        if issue.empty and not sub.send_empty:
            any_new = issuelib.candidate_mask(index, since, now, ()) != 0
            reason = "none of the new entries matched the profile" if any_new else "no new entries"
            planned.append(Planned(sub, issue, None, None, reason))
            continue
        rendered, msg = _render_message(config, issue, now, secret, env, cache)
        planned.append(Planned(sub, issue, rendered, msg, ""))
    return planned, skipped


BATCH_FROM = 64  # due subscribers from which matching runs as one numpy batch (same results)


def _batch_select(index: EntryIndex, due: list[tuple[Subscriber, datetime, datetime, bool]],
                  profiles: dict[str, Profile], now: datetime) -> dict[str, list[Match]]:
    """Select for many subscribers at once: one batch per issue window (subscribers due at the
    same slot share it), each capped at the subscriber's own max_entries."""
    from newsletter.batch import BatchMatcher

    matcher = BatchMatcher(index)
    by_window: dict[datetime, list[Subscriber]] = {}
    for sub, _slot, since, _first in due:
        by_window.setdefault(since, []).append(sub)
    out: dict[str, list[Match]] = {}
    for since, subs in by_window.items():
        candidates = issuelib.candidate_mask(index, since, now, ())
        limit = max(s.max_entries for s in subs)
        result = matcher.select_many([profiles[s.email] for s in subs], limit, candidates)
        for p, sub in enumerate(subs):
            out[sub.email] = matcher.matches(profiles[sub.email], result.top(p)[: sub.max_entries])
    return out


def _render_message(config: Config, issue: Issue, now: datetime, secret: str | None,
                    env: object, cache: dict | None = None) -> tuple[RenderedIssue, bytes]:  # type: ignore[type-arg]
    settings = config.settings
    links = messagelib.unsubscribe_links(settings, issue.subscriber.email, secret or PREVIEW_SECRET)
    rendered = render(issue, settings, unsubscribe_url=links.visible,
                      change_url=messagelib.change_profile_url(settings, issue.subscriber.email),
                      env=env, cache=cache)  # type: ignore[arg-type]
    msg = messagelib.build(rendered, settings, issue.subscriber, links, now)
    return rendered, messagelib.to_bytes(msg)


# --- sending -----------------------------------------------------------------------------------

@dataclass
class SendReport:
    built: int = 0
    empty: list[tuple[str, str]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    retrying: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    expired: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None
    skipped: list[Skipped] = field(default_factory=list)


def record(store: Store, planned: Sequence[Planned]) -> int:
    """Commit built issues: `pending` with their exact bytes, or `empty`. Returns how many are new."""
    added = 0
    for p in planned:
        status = "pending" if p.sends else "empty"
        ids = [m.entry.id for m in p.issue.matches]
        msg_id = messagelib.message_id_from_bytes(p.message) if p.message else None
        if store.record_issue(p.issue.id, p.subscriber.email, p.issue.slot, p.issue.built_at, status,
                              ids, p.rendered.subject if p.rendered else None, msg_id, p.message,
                              note=p.reason or None):
            added += 1
    return added


def send(config: Config, store: Store, now: datetime, *, only: str | Collection[str] | None = None,
         outbox: Path | None = None, secret: str | None = None,
         progress: Callable[[Outcome], None] | None = None, catch_up: timedelta | None = None,
         should_stop: Callable[[], bool] | None = None, dkim_key: bytes | None = None) -> SendReport:
    if config.settings.base_url and not secret:
        raise ConfigError("NEWSLETTER_SECRET is not set: it signs the unsubscribe links "
                          "(newsletter.base_url is set); export it and run send again")
    planned, skipped = plan(config, store, now, only=only, secret=secret, catch_up=catch_up)
    if config.settings.dkim is not None:
        planned = _signed(planned, config, dkim_key)
    report = SendReport(skipped=skipped)
    report.built = record(store, planned)
    report.empty = [(p.subscriber.email, p.reason) for p in planned if not p.sends]
    jobs = _pending_jobs(config, store, now, only, report)
    if not jobs:
        return report
    by_issue = {j.issue_id: j for j in jobs}
    rng = random.Random()
    transient: dict[str, str] = {}

    def on_outcome(outcome: Outcome) -> None:
        job = by_issue[outcome.issue_id]
        transient.pop(job.issue_id, None)
        if outcome.ok:
            store.mark_sent(job.issue_id, now)
            store.clear_hard_failures(job.recipient)
            report.sent.append(job.recipient)
        elif outcome.permanent:
            store.mark_attempt(job.issue_id, error=outcome.text, code=outcome.code, permanent=True,
                               next_attempt=None)
            report.failed.append((job.recipient, outcome.text))
            if store.add_hard_failure(job.recipient, config.settings.smtp.pause_after):
                report.failed.append((job.recipient, "subscriber paused after repeated permanent failures"))
        else:
            row = store.issue(job.issue_id)
            attempts = (row.attempts if row else 0) + 1
            store.mark_attempt(job.issue_id, error=outcome.text, code=outcome.code, permanent=False,
                               next_attempt=now + issuelib.retry_delay(attempts, rng.random()),
                               possible_duplicate=outcome.possible_duplicate)
            transient[job.issue_id] = outcome.text
        if progress:
            progress(outcome)

    if outbox is not None:
        from newsletter.delivery import maildir

        maildir.deliver(outbox, jobs, on_outcome)
    else:
        asyncio.run(_deliver_smtp(config, jobs, on_outcome, transient, report, rng, should_stop))
    report.retrying = [(by_issue[i].recipient, text) for i, text in transient.items()]
    return report


async def _deliver_smtp(config: Config, jobs: list[Job], on_outcome: Callable[[Outcome], None],
                        transient: dict[str, str], report: SendReport, rng: random.Random,
                        should_stop: Callable[[], bool] | None = None) -> None:
    """Deliver, then retry transient failures within the run with exponential backoff and jitter."""
    from newsletter.delivery.smtp import SmtpSender

    smtp = config.settings.smtp
    sender = SmtpSender(smtp, should_stop)
    by_issue = {j.issue_id: j for j in jobs}
    round_jobs = jobs
    for attempt in range(smtp.retries + 1):
        await sender.deliver(round_jobs, on_outcome)
        if sender.tripped:
            report.stopped = (f"stopped after {sender.consecutive_connection_failures} consecutive "
                              "connection failures; the rest stays pending")
            return
        if not transient or attempt == smtp.retries or sender.stopping():
            return
        await asyncio.sleep((2.0 ** attempt) * (0.5 + 0.5 * rng.random()))
        round_jobs = [by_issue[i] for i in transient]


def _signed(planned: list[Planned], config: Config, key: bytes | None) -> list[Planned]:
    """DKIM-sign every message before it is committed, so each retry sends the signed bytes."""
    from dataclasses import replace

    from dkim import DKIMException

    dkim = config.settings.dkim
    assert dkim is not None
    if not key:
        raise ConfigError("newsletter.dkim is set but NEWSLETTER_DKIM_KEY_FILE is not: point it at the "
                          "PEM private key of the selector")
    out = []
    for p in planned:
        if p.message is not None:
            try:
                p = replace(p, message=messagelib.dkim_sign(p.message, dkim.domain, dkim.selector, key))
            except DKIMException as exc:
                raise ConfigError(f"DKIM signing failed ({type(exc).__name__}: {exc}); check the key") from exc
        out.append(p)
    return out


def _pending_jobs(config: Config, store: Store, now: datetime, only: str | Collection[str] | None,
                  report: SendReport) -> list[Job]:
    sender = messagelib.sender_address(config.settings)
    chosen = {s.email for s in _chosen(config, only)}
    active = {s.email for s in config.subscribers if not (s.paused or s.unsubscribed)} - store.unsubscribed()
    active &= chosen
    owner = process_owner()
    lease = datetime.now(timezone.utc) + CLAIM_LEASE  # wall clock: claims coordinate real processes
    jobs = []
    for row in store.pending_issues(now):
        if row.subscriber not in active:
            continue
        sub = config.subscriber(row.subscriber)
        assert sub is not None
        nxt = issuelib.schedule_of(sub).next_after(row.slot)
        if nxt is not None and now >= nxt + timedelta(hours=1) and row.attempts > 0:
            reason = f"not delivered before the next slot ({nxt:%Y-%m-%d %H:%M} UTC): {row.last_error}"
            store.mark_expired(row.id, reason)
            report.expired.append((row.subscriber, reason))
            continue
        if row.message is None:
            raise DeliveryError(f"issue {row.id} for {row.subscriber} is pending without a message")
        if not store.claim(row.id, owner, lease, _claim_stealable):
            continue  # another `send` or `run` is delivering it right now
        jobs.append(Job(row.id, sender, row.subscriber, row.message, wire_form(row.subscriber)))
    return jobs


CLAIM_LEASE = timedelta(minutes=15)


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_stealable(holder: str, until: datetime) -> bool:
    """A claim can be taken over when its lease ran out or its process on this host is gone."""
    if until < datetime.now(timezone.utc):
        return True
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def unsubscribe(config_path: Path, state_path: Path, address: str, now: datetime,
                env: dict[str, str] | None = None) -> bool:
    """Record an unsubscribe in the state and in subscribers.yaml. False: no such subscriber."""
    from newsletter import subscribers
    from newsletter.addresses import normalise_address
    from newsletter.config import load

    email = normalise_address(address)
    try:
        config = load(config_path, env or {})
        known = config.subscriber(email) is not None
    except ConfigError:
        known = True  # the file is being edited into shape: record it in the state regardless
    if not known:
        return False
    with Store(state_path) as store:
        store.set_unsubscribed(email, now)
    try:
        subscribers.edit(config_path, subscribers.flag(email, "unsubscribed", True), env or {})
    except ConfigError:
        pass  # the state already stops every delivery; the file is fixed by its next edit
    return True


__all__ = ["plan", "record", "send", "unsubscribe"]
