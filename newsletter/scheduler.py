"""`newsletter run`: APScheduler 3 jobs that call the pipeline; no logic of their own.

One cron job per (schedule, time zone) group of subscribers, so 100k subscribers are a few hundred
jobs; one job per source on the source's own schedule; a reload check for subscribers.yaml and
(`bounces: {maildir: PATH}`) a look for new bounce reports in that Maildir, as often. Group
jobs coalesce and have a catch-up grace period: after downtime a missed slot is sent once. Issues
are keyed by slot and claimed before delivery, so two services (or a service and a manual `send`)
never deliver one issue twice. SIGTERM/SIGINT stop new transactions and let in-flight ones finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter import bounces, ingest, pipeline
from newsletter.config import load
from newsletter.errors import ConfigError, NewsletterError
from newsletter.models import Config
from newsletter.schedule import Schedule
from newsletter.deployment import Deployment
from newsletter.roster import Roster
from newsletter.store_readers import ReaderStore

if TYPE_CHECKING:
    from newsletter.web import Running

log = logging.getLogger("newsletter.run")
CATCH_UP = timedelta(hours=6)


class Service:
    def __init__(self, config_path: Path, state_path: Path | None, env: Mapping[str, str], *,
                 host: str = "127.0.0.1", port: int | None = 8025, catch_up: timedelta = CATCH_UP,
                 reload_every: float = 5.0, clock: Callable[[], datetime] | None = None) -> None:
        self.config_path = config_path
        self.env = dict(env)
        self.host, self.port = host, port
        self.catch_up = catch_up
        self.reload_every = reload_every
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.dep = Deployment.open(config_path, state_path, self.env)
        for warning in self.dep.warnings():
            log.warning("%s", warning)
        self.state_path = self.dep.state
        self._stamp = self._file_stamp()
        self.stopping = threading.Event()
        self.scheduler: AsyncIOScheduler | None = None
        self.endpoint: Running | None = None
        self._lock = asyncio.Lock()
        self._bounce_keys: set[str] = set()  # Maildir messages read already (the store dedupes reports too)

    @property
    def config(self) -> Config:
        return self.dep.config

    # --- what the jobs do (callable directly, as the tests do) -----------------------------------

    def send_now(self, group: tuple[str, str] | None = None) -> pipeline.SendReport:
        now = self.clock()
        self.end_pauses(now)
        report = self.dep.send(now, fetch=False, group=group, catch_up=self.catch_up,
                               should_stop=self.stopping.is_set).report
        for email, reason in report.failed:
            log.warning("%s: failed: %s", email, reason)
        for email, reason in report.retrying:
            log.info("%s: will retry: %s", email, reason)
        if report.sent or report.failed or report.retrying:
            log.info("sent %d, retrying %d, failed %d", len(report.sent), len(report.retrying), len(report.failed))
        return report

    def end_pauses(self, now: datetime) -> list[str]:
        """Pauses "until a date" whose day has come end before the subscribers' slots are looked at."""
        resumed = self.dep.end_pauses(now)
        for email in resumed:
            log.info("%s: the pause ended; the next issue catches up on it", email)
        return resumed

    def check_bounces(self) -> bounces.Summary | None:
        """Read the new messages of the bounce Maildir (`bounces: {maildir: PATH}`), if one is set."""
        path = self.config.settings.bounce_maildir
        if path is None or not path.is_dir():
            return None
        with ReaderStore(self.dep.state) as store:
            summary = bounces.process(store, self.config, path, self.clock(), done=self._bounce_keys)
        for email in summary.suppressed:
            log.warning("%s: suppressed: the address bounced", email)
        return summary

    def fetch(self, names: list[str] | None = None) -> list[ingest.IngestReport]:
        config = self.config
        if names is not None:
            from dataclasses import replace

            wanted = set(names)
            settings = replace(config.settings, sources=tuple(s for s in config.settings.sources if s.name in wanted))
            config = replace(config, settings=settings)
        with self.dep.store() as store:
            reports = ingest.ingest_sources(store, config, self.clock())
        for r in reports:
            if r.error:
                log.warning("%s", r.error)
            else:
                log.info("%s: %d new, %d updated", r.source, r.new, r.updated)
        return reports

    def groups(self) -> set[tuple[str, str]]:
        """The (cron, zone) pairs of every subscriber, in the file and in the store: one job each.
        Who in a group receives an issue is decided when it is built (newsletter/standing.py)."""
        with self.dep.store() as store:
            return Roster(self.config, store).schedules()

    def reload(self) -> bool:
        """Pick up an edited subscribers file; an invalid edit is reported and the old one kept."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load(self.config_path, self.env)
        except ConfigError as exc:
            log.error("%s changed but is invalid; keeping the previous configuration:\n%s",
                      self.config_path, "\n".join(exc.problems))
            return False
        self.dep = Deployment(config, self.dep.state, self.dep.secrets, self.dep.worker)
        log.info("%s reloaded: %d subscribers", self.config_path, len(config.subscribers))
        if self.scheduler is not None:
            self._schedule_groups()
        return True

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = self.config_path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    # --- scheduling ------------------------------------------------------------------------------

    def triggers(self) -> dict[tuple[str, str], CronTrigger]:
        return {key: Schedule(*key).trigger() for key in self.groups()}

    def _schedule_groups(self) -> None:
        assert self.scheduler is not None
        for job in self.scheduler.get_jobs():
            if job.id.startswith("group:"):
                job.remove()
        for cron, zone in sorted(self.groups()):
            self.scheduler.add_job(
                self._run_group, Schedule(cron, zone).trigger(), args=[cron, zone],
                id=f"group:{cron}|{zone}", name=f"subscribers at '{cron}' {zone}",
                coalesce=True, max_instances=1, misfire_grace_time=int(self.catch_up.total_seconds()),
                replace_existing=True)

    def _schedule_sources(self) -> None:
        assert self.scheduler is not None
        for src in self.config.settings.sources:
            self.scheduler.add_job(self._run_fetch, Schedule(src.schedule, "UTC").trigger(),
                                   args=[src.name], id=f"source:{src.name}", coalesce=True, max_instances=1,
                                   misfire_grace_time=600, replace_existing=True)

    async def _in_thread(self, fn: Callable[..., object], *args: object) -> object:
        async with self._lock:  # one delivery step at a time
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _run_group(self, cron: str, zone: str) -> None:
        try:
            await self._in_thread(self.send_now, (cron, zone))
        except NewsletterError as exc:
            log.error("group '%s' %s: %s", cron, zone, exc)

    async def _run_fetch(self, name: str) -> None:
        # Fetches run beside deliveries (their own thread and connection): a slow source never
        # holds up sending or shutdown.
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.fetch, [name])
        except NewsletterError as exc:
            log.error("source '%s': %s", name, exc)

    async def _run_reload(self) -> None:
        self.reload()

    async def _run_bounces(self) -> None:
        try:
            await self._in_thread(self.check_bounces)
        except NewsletterError as exc:
            log.error("bounces: %s", exc)

    async def _start_endpoint(self) -> None:
        """The reader-facing endpoint starts first: a slow source never keeps it down."""
        from newsletter import web

        if self.port is not None and self.dep.secrets.link_secret:
            def record(address: str) -> None:
                self.dep.unsubscribe(address, self.clock())

            def current() -> Deployment:  # an edit made from a page shows at once
                self.reload()
                return self.dep

            first: set[asyncio.Task[object]] = set()

            def confirmed(address: str) -> None:  # a new reader's first digest is due at once
                if self.scheduler is not None:
                    self._schedule_groups()
                task = asyncio.get_running_loop().create_task(self._in_thread(
                    lambda: self.dep.send(self.clock(), fetch=False, only=address, catch_up=self.catch_up)))
                first.add(task)
                task.add_done_callback(first.discard)

            app = web.readers_app(current, self.env, hosts=web.allowed_hosts(self.config.settings.base_url, self.host),
                                  clock=self.clock, unsubscribe=record, on_confirmed=confirmed)
            self.endpoint = await web.start(app, self.host, self.port)
        elif self.port is not None:
            log.warning("NEWSLETTER_SECRET is not set: the reader pages (and unsubscribe) are off")

    async def _stop_endpoint(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()

    async def run(self, once: bool = False) -> None:
        """Start the endpoint, then fetch and catch up on what is due, then (unless once) keep
        going until a signal."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_signal() -> None:
            log.info("stopping: finishing in-flight deliveries")
            self.stopping.set()
            done.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        if not once:
            await self._start_endpoint()
        if once:
            await asyncio.get_running_loop().run_in_executor(None, self.fetch)
            if not self.stopping.is_set():
                await self._in_thread(self.send_now)
            return
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._schedule_groups()
        self._schedule_sources()
        self.scheduler.add_job(self._run_reload, "interval", seconds=self.reload_every, id="reload",
                               coalesce=True, max_instances=1)
        self.scheduler.add_job(self._run_bounces, "interval", seconds=self.reload_every, id="bounces",
                               coalesce=True, max_instances=1)
        self.scheduler.start()
        startup = asyncio.create_task(self._startup())
        log.info("running: %d jobs; next: %s", len(self.scheduler.get_jobs()), self.next_runs())
        await done.wait()
        self.scheduler.shutdown(wait=False)
        if not startup.done():
            startup.cancel()
        async with self._lock:  # wait for an in-flight delivery step to finish its transactions
            pass
        await self._stop_endpoint()

    async def _startup(self) -> None:
        """The first pass: fetch every source, then send what is due (a missed slot once)."""
        await self._run_fetch_all()
        if not self.stopping.is_set():
            try:
                await self._in_thread(self.send_now)
            except NewsletterError as exc:
                log.error("%s", exc)

    async def _run_fetch_all(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.fetch)
        except NewsletterError as exc:
            log.error("%s", exc)

    def next_runs(self) -> str:
        assert self.scheduler is not None
        times = sorted((j.next_run_time, j.name) for j in self.scheduler.get_jobs()
                       if j.id.startswith("group:") and j.next_run_time)
        return ", ".join(f"{n} at {t:%Y-%m-%d %H:%M %Z}" for t, n in times[:3]) or "nothing scheduled"


async def serve(config_path: Path, state_path: Path | None, env: Mapping[str, str], host: str, port: int,
                ready: Callable[[int], None] | None = None) -> None:
    """`newsletter serve`: only the reader pages (no scheduled sending)."""
    from newsletter import web

    dep = Deployment.open(config_path, state_path, env)
    if not dep.secrets.link_secret:
        raise ConfigError("NEWSLETTER_SECRET is not set: it verifies the unsubscribe tokens")

    current = web.Current(dep, env)

    def record(address: str) -> None:
        current().unsubscribe(address, datetime.now(timezone.utc))

    app = web.readers_app(current, env, hosts=web.allowed_hosts(dep.config.settings.base_url, host),
                          clock=lambda: datetime.now(timezone.utc), unsubscribe=record)
    running = await web.start(app, host, port)
    print(f"serving unsubscribe on http://{host}:{running.port}/unsubscribe/<token>", flush=True)
    if ready:
        ready(running.port)
    await web.until_signal()
    await running.stop()
