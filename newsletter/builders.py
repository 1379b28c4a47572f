"""Building batches in worker processes, so that a big `send` uses every core: each worker walks
the same roster, takes every n-th batch (the others it does not look at), builds it (matching,
rendering, message bytes) and commits it to the ledger on its own connection, claimed for the
parent process; the parent only delivers (`Workers.batches`).

A worker leaves as soon as its parent is gone (a killed `send` leaves no orphan behind: what it
committed is pending and claimed by a dead process, which the next run takes over); a worker that
dies without a word (a SIGKILL, the OOM killer) ends the parent's run with an error, not a wait.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import pickle
import queue as queues
import signal
import time
import traceback
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from newsletter.builder import Builder
from newsletter.credentials import PREVIEW_SECRET, Secrets
from newsletter.errors import NewsletterError, StateError
from newsletter.issues import NotDue
from newsletter.ledger import Ledger
from newsletter.models import Config
from newsletter.store import Store


COLLECT_EVERY = 20  # batches between two full collections in a worker


@dataclass(frozen=True)
class Task:
    """What a worker needs: everything is plain data (it crosses a process boundary)."""

    config: Config
    state: Path | str  # a SQLite file or a PostgreSQL URL
    secrets: Secrets
    now: datetime
    only: str | Collection[str] | None
    group: tuple[str, str] | None
    catch_up: timedelta | None
    batch: int
    owner: str
    lease: timedelta
    worker: int = 0  # which share of the batches (set by `Workers`)
    workers: int = 1
    parent: int = 0


@dataclass
class Batch:
    """One built and committed batch, as the parent delivers and reports it."""

    jobs: list[tuple[str, str, bytes]] = field(default_factory=list)  # (issue id, recipient, message)
    built: int = 0
    empty: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[NotDue] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


class Workers:
    """The build processes of one run, as a context: started on entry, stopped and joined on exit;
    their batches are read as they come."""

    def __init__(self, task: Task, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._out: Any = ctx.Queue(maxsize=count)
        self._stop = ctx.Event()
        self._procs = [ctx.Process(target=work, daemon=True, args=(
            replace(task, worker=k, workers=count, parent=os.getpid()), self._out, self._stop)) for k in range(count)]

    def __enter__(self) -> Workers:
        for p in self._procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for p in self._procs:
            p.join(timeout=30)

    def stop(self) -> None:
        """Ask every worker to leave after its current batch (`batches` ends once all have)."""
        self._stop.set()

    async def batches(self) -> AsyncIterator[Batch]:
        """Each built batch as it arrives, until every worker is done; then the first failure, if
        any, is raised. A worker killed says nothing: one seen gone at a quiet second and still
        silent after another one has nothing left in the pipe, and is a failure."""
        loop = asyncio.get_running_loop()
        running, silent, failure = set(range(len(self._procs))), set[int](), None
        while running:
            try:
                kind, k, item = await loop.run_in_executor(None, self._out.get, True, 1.0)
            except queues.Empty:
                gone = {k for k in running if self._procs[k].exitcode is not None}
                for k in sorted(gone & silent):
                    running.discard(k)
                    failure = failure or StateError(
                        f"build worker {k + 1} of {len(self._procs)} ended before finishing its batches "
                        f"({_ended(self._procs[k].exitcode)}); what it committed stays pending and the next "
                        "`send` delivers it")
                silent = gone
                continue
            if kind == "batch":
                yield item
            else:
                running.discard(k)
                failure = failure or item
        if failure is not None:
            raise failure


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def work(task: Task, out: Any, stop: Event) -> None:
    """The worker's loop (the target of a spawned process)."""
    from newsletter.pipeline import due_batches

    try:
        with Store(task.state) as store:
            builder = Builder(task.config, store, task.now, link_secret=task.secrets.link_secret or PREVIEW_SECRET,
                              dkim_key=task.secrets.dkim_key)
            ledger = Ledger(store, now=task.now, pause_after=task.config.settings.smtp.pause_after,
                            owner=task.owner, lease=task.lease)
            # the collector runs at known points, not every few hundred allocations: a batch makes
            # hundreds of thousands of objects and almost no cycles, and each automatic full
            # collection walks the whole heap (the renderer's cards): 13-15 % of a worker's CPU
            gc.disable()
            batches = 0
            t = time.perf_counter()
            for due, skipped in due_batches(task.config, store, task.now, only=task.only, group=task.group,
                                            catch_up=task.catch_up, size=task.batch,
                                            share=(task.worker, task.workers)):
                if stop.is_set() or os.getppid() != task.parent:
                    out.cancel_join_thread()  # nobody reads any more: exit without flushing
                    return
                item = Batch(skipped=skipped)
                item.stages["due"] = time.perf_counter() - t
                t = time.perf_counter()
                built = builder.build(due)
                item.stages["build"] = time.perf_counter() - t
                t = time.perf_counter()
                new = set(ledger.record([b.to_record() for b in built]))
                item.stages["record"] = time.perf_counter() - t
                item.built = len(new)
                item.empty = [(b.subscriber.email, b.reason) for b in built if not b.sends and b.issue.id in new]
                item.jobs = [(b.issue.id, b.subscriber.email, b.message) for b in built
                             if b.message is not None and b.issue.id in new]
                if not _put(out, ("batch", task.worker, item), task.parent, stop):
                    return
                batches += 1
                if batches % COLLECT_EVERY == 0:
                    gc.collect()  # what cycles hold stays bounded
                t = time.perf_counter()
        _put(out, ("done", task.worker, None), task.parent, stop)
    except BaseException as exc:  # noqa: B902  # reported to the parent, which raises it
        _put(out, ("error", task.worker, _portable(exc)), task.parent, stop)
    finally:
        if os.getppid() != task.parent:
            out.cancel_join_thread()  # the parent is gone: never wait to flush to nobody


def _put(out: Any, item: object, parent: int, stop: Event) -> bool:
    while True:
        try:
            out.put(item, timeout=1.0)
            return True
        except queues.Full:
            if os.getppid() != parent or stop.is_set():
                out.cancel_join_thread()  # nobody reads any more: exit without flushing
                return False


def _portable(exc: BaseException) -> BaseException:
    """The error as the parent can re-raise it: a user-facing error as it is (or with the same
    words if it does not survive pickling), anything else (a bug) with the worker's traceback."""
    if isinstance(exc, NewsletterError):
        try:
            return pickle.loads(pickle.dumps(exc))  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001  # any pickling failure: keep the words
            return StateError(str(exc))
    return RuntimeError("a build worker failed:\n" + "".join(traceback.format_exception(exc)))
