"""One deployment: a subscribers file, its state store and the secrets of the environment, read once
at this edge. Each command of the CLI (and each job of the service) is one call here, so `send`,
`run`, `serve` and `preview` all get their configuration, state and secrets the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import credentials, explain, guarantees, ledger
from newsletter.config import load
from newsletter.credentials import Secrets
from newsletter.errors import ConfigError, QuerySyntaxError
from newsletter.issues import NotDue
from newsletter.explain import Reason
from newsletter.issues import profile_of
from newsletter.matching import Profile
from newsletter.replay import Replay, replay
from newsletter.models import Config, Entry
from newsletter.roster import Roster
from newsletter.store import IssueRow, Location, Store, is_url, location

if TYPE_CHECKING:  # sending, fetching and the reader tables are imported by the commands that use them
    from newsletter import ingest, pipeline
    from newsletter.builder import Built
    from newsletter.delivery import Outcome

LEASE_VARIABLE = "NEWSLETTER_CLAIM_LEASE"  # seconds; default ledger.CLAIM_LEASE
WORKER_VARIABLE = "NEWSLETTER_WORKER"  # names this worker in claims and `status` (default: the host name)


WORKERS_FROM = 5_000  # subscribers from which `send` builds in worker processes (one per core)


def default_state(config_path: Path) -> Path:
    return config_path.resolve().parent / ".newsletter" / "state.sqlite3"


def resolve_state(config_path: Path, given: str | Path | None, setting: str | None = None) -> Location:
    """The state to use: `--state` first, then `newsletter.state:` (a path relative to the subscribers
    file, or a postgresql:// URL), then .newsletter/state.sqlite3 beside the subscribers file."""
    if given:
        return location(given)
    if setting:
        found = location(setting)
        return found if is_url(found) or Path(found).is_absolute() else config_path.resolve().parent / found
    return default_state(config_path)


@dataclass(frozen=True)
class Worker:
    """How this process takes part in sharing the work: its name in claims, and its claim lease."""

    name: str | None = None
    lease: timedelta = ledger.CLAIM_LEASE

    @classmethod
    def read(cls, env: Mapping[str, str]) -> Worker:
        raw = env.get(LEASE_VARIABLE, "").strip()
        lease = ledger.CLAIM_LEASE
        if raw:
            try:
                lease = timedelta(seconds=float(raw))
            except ValueError:
                lease = timedelta(0)
            if lease.total_seconds() < 1:
                raise ConfigError(f"{LEASE_VARIABLE}={raw!r}: the claim lease is a number of seconds, at least 1")
        return cls(env.get(WORKER_VARIABLE, "").strip() or None, lease)

    def tuning(self) -> dict[str, object]:
        return {"lease": self.lease, "owner": ledger.process_owner(self.name) if self.name else None}


@dataclass(frozen=True)
class DryRun:
    built: list[Built]
    not_due: list[NotDue]
    pending: list[IssueRow]
    ingested: list[ingest.IngestReport]


@dataclass(frozen=True)
class SendResult:
    report: pipeline.SendReport
    ingested: list[ingest.IngestReport]


def read_state(state: Location, given: bool) -> Store:
    """The state for a command that only reads: read in place, never created. A state path given
    by hand (`--state`) that does not exist is a typo, not an empty state."""
    if given and isinstance(state, Path) and not state.exists():
        # a usage error (exit 2), like any other mistyped argument
        raise ConfigError(f"{state}: no state file there (check --state; `newsletter ingest` or `send` create it)")
    return Store.reader(state)


class Deployment:
    def __init__(self, config: Config, state: Location, secrets: Secrets, worker: Worker = Worker(),
                 *, state_given: bool = False) -> None:
        self.config = config
        self.state = state
        self.secrets = secrets
        self.worker = worker
        self.state_given = state_given  # named with --state (a missing file is then a typo)

    @classmethod
    def open(cls, config_path: Path, state: str | Path | None, env: Mapping[str, str]) -> Deployment:
        """Load and validate the configuration and read the secrets, once. `state` is a path or a
        postgresql:// URL (the password comes from NEWSLETTER_DB_PASSWORD, PGPASSWORD or ~/.pgpass)."""
        config = load(config_path, env)
        where = resolve_state(config_path, state, getattr(config.settings, "state", None))
        return cls(config, where, credentials.read(env), Worker.read(env), state_given=state is not None)

    def store(self) -> Store:
        return Store(self.state)

    def snapshot(self) -> Store:
        """An in-memory copy of the state that writes never leave: previews and dry runs."""
        return Store.snapshot(self.state)

    def reader(self) -> Store:
        """The state for commands that only read: consistent while open, never copied (`read_state`)."""
        return read_state(self.state, self.state_given)

    def warnings(self) -> list[str]:
        return list(self.config.warnings)

    # --- the commands --------------------------------------------------------------------------

    def validate(self) -> int:
        """Problems that need the state too: an address defined both in the file and in the store.
        Returns the number of store-held subscribers."""
        if not self.state.exists():
            self._check_guarantees(None)
            return 0
        with self.reader() as store:
            problems = Roster(self.config, store).conflicts()
            held = store.subscriber_count()
            self._check_guarantees(store)
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} subscribers are defined "
                              "twice", tuple(problems))
        return held

    def _check_guarantees(self, store: Store | None) -> None:
        """Every subscriber's must_include / must_exclude papers, against the stored papers (none
        without a state: each named paper is then missing)."""
        problems: list[str] = []
        batches = (Roster(self.config, store).subscriber_batches() if store is not None
                   else iter([list(self.config.subscribers)]))
        for subs in batches:
            ids = guarantees.wanted(subs)
            if not ids:
                continue
            papers = store.entries_by_id(sorted(ids)) if store is not None else {}  # only the papers named
            for sub in subs:
                problems += guarantees.broken(sub, papers)
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} must_include / must_exclude "
                              "guarantees are broken", tuple(problems))

    def send(self, now: datetime, *, fetch: bool = True, only: str | Collection[str] | None = None,
             group: tuple[str, str] | None = None, outbox: Path | None = None,
             progress: Callable[[Outcome], None] | None = None, catch_up: timedelta | None = None,
             should_stop: Callable[[], bool] | None = None, workers: int | None = None,
             **tuning: object) -> SendResult:
        """Ingest, then build and deliver what is due. `workers`: build processes (None: one per
        core when the list is big enough to be worth it, else building runs in a thread)."""
        from newsletter import ingest, pipeline

        self.end_pauses(now)  # a pause "until a date" whose day has come ends before anyone is looked at
        with self.store() as store:
            ingested = ingest.ingest_sources(store, self.config, now) if fetch else []
            if workers is None:
                big = only is None and Roster(self.config, store).count() >= WORKERS_FROM
                workers = (os.cpu_count() or 1) if big and (os.cpu_count() or 1) > 1 else 0
            report = pipeline.send(self.config, store, now, secrets=self.secrets, only=only, group=group,
                                   outbox=outbox, progress=progress, catch_up=catch_up, should_stop=should_stop,
                                   workers=workers, **{**self.worker.tuning(), **tuning})  # type: ignore[arg-type]
        return SendResult(report, ingested)

    def end_pauses(self, now: datetime) -> list[str]:
        """Lift the pauses "until a date" whose day has come (`standing.pause_over`); who resumed."""
        from newsletter.store_readers import ReaderStore

        with ReaderStore(self.state) as store:
            return store.end_pauses(now)

    def explain(self, paper: str, each: Callable[[Reason], None], *, subscriber: str | None = None,
                issue: str | None = None) -> Entry:
        """Why `paper` did or did not reach each subscriber (or one): `each` gets the reasons as they
        come (a batch of subscribers is read at a time). Returns the paper."""
        with self.reader() as store:
            found, reasons = explain.explain(store, self.config, paper, subscriber=subscriber, issue_id=issue)
            for reason in reasons:
                each(reason)
        return found

    def replay_queries(self, old: str, new: str, since: datetime) -> list[Replay]:
        """`match --diff OLD NEW`: what replacing query OLD by NEW gains and loses over the stored papers
        first seen after `since`: for the queries alone, then for each subscriber whose keywords hold
        OLD (with the issues the papers would have gone into)."""
        try:
            profiles = Profile.from_strings([old]), Profile.from_strings([new])
        except QuerySyntaxError as exc:
            raise ConfigError(f"query: {exc}") from exc
        with self.reader() as store:
            entries = store.entries(since=since)
            out = [replay(entries, *profiles, since)]
            for members in Roster(self.config, store).batches():
                holders = [m.subscriber for m in members if old in m.subscriber.keywords]
                issues = store.issue_heads_of([s.email for s in holders]) if holders else {}
                for sub in holders:
                    keywords = [new if k == old else k for k in sub.keywords]
                    changed = Profile.from_strings(keywords, sub.exclude, sub.min_upvotes)
                    out.append(replay(entries, profile_of(sub), changed, since, who=sub.email,
                                      issues=issues.get(sub.email, [])))
        return out

    def dry_run(self, now: datetime, *, fetch: bool = True, only: str | None = None) -> DryRun:
        """What `send` would do now; nothing is written (sources are ingested into a copy)."""
        from newsletter import ingest, pipeline

        with self.snapshot() as store:
            ingested = ingest.ingest_sources(store, self.config, now) if fetch else []
            built, not_due = pipeline.plan(self.config, store, now, only=only)
            pending = store.pending_issues(now)
        return DryRun(built, not_due, pending, ingested)

    def preview(self, now: datetime, out: Path, *, fetch: bool = True, only: str | None = None) -> tuple[list, list]:  # type: ignore[type-arg]
        """Write the next issue of every (or one) subscriber as files; nothing is recorded."""
        from newsletter import ingest, preview

        with self.snapshot() as store:
            ingested = ingest.ingest_sources(store, self.config, now) if fetch else []
            rows = preview.write(self.config, store, now, out, only=only, secret=None)
        return rows, ingested

    def unsubscribe(self, email: str, now: datetime) -> bool:
        """One store commit (subscribers.yaml is never rewritten). False: no such subscriber."""
        from newsletter import pipeline

        with self.store() as store:
            if Roster(self.config, store).find(email) is None:
                return False
            pipeline.unsubscribe(store, email, now)
        return True
