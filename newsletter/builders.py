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
import signal
import threading
import time
import traceback
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from multiprocessing import connection
from multiprocessing.connection import Connection
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


# batches between two full collections in a worker: each walks the whole heap (the renderer's caches
# at their bound: ~750,000 objects, ~1 s) and finds a few hundred unreachable objects per 20 batches
COLLECT_EVERY = 100


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
    their batches are read as they come. Each worker has a pipe of its own (no lock shared with the
    others that its death could leave held), and it holds the pipe's only write end: a worker that
    dies without a word is an end of file, at once."""

    def __init__(self, task: Task, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        pipes = [ctx.Pipe(duplex=False) for _ in range(count)]
        self._readers = [r for r, _ in pipes]
        self._writers = [w for _, w in pipes]
        self._procs = [ctx.Process(target=work, daemon=True, args=(
            replace(task, worker=k, workers=count, parent=os.getpid()), w, self._stop))
            for k, w in enumerate(self._writers)]
        # the pipes are read in a thread (`batches`), which may still be reading when the run is
        # cancelled and `__exit__` drains them: one reader at a time
        self._reading = threading.Lock()

    def __enter__(self) -> Workers:
        for p, w in zip(self._procs, self._writers):
            p.start()
            w.close()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the workers and wait for them; on the way out of a failure nobody reads their
        batches, so they are read here and dropped (each is committed: the next run delivers it)."""
        self.stop()
        deadline = time.monotonic() + 30
        while (open_ := [r for r in self._readers if not r.closed]) and time.monotonic() < deadline:
            with self._reading:
                ready = connection.wait(open_, timeout=0.1)
                for r in open_:
                    if r in ready:
                        try:
                            r.recv_bytes()
                        except (EOFError, OSError):
                            r.close()
        for p in self._procs:
            if p.is_alive():
                p.terminate()
            p.join()
        for r in self._readers:
            r.close()

    def stop(self) -> None:
        """Ask every worker to leave after its current batch: each says it is done, and `batches`
        ends once all have."""
        self._stop.set()

    async def batches(self) -> AsyncIterator[Batch]:
        """Each built batch as it arrives, until every worker is done; then the first failure, if
        any, is raised (a worker's own, or its death)."""
        loop = asyncio.get_running_loop()
        live, failure = dict(enumerate(self._readers)), None
        while live:
            got = await loop.run_in_executor(None, self._next, live)
            if got is None:
                continue  # a quiet second
            k, message = got
            if message is not None and message[0] == "batch":
                yield message[1]
                continue
            live.pop(k).close()
            if message is None:
                self._procs[k].join(timeout=5)
                message = ("error", StateError(
                    f"build worker {k + 1} of {len(self._procs)} ended before finishing its batches "
                    f"({_ended(self._procs[k].exitcode)}); what it committed stays pending and the next "
                    "`send` delivers it"))
            failure = failure or message[1]
        if failure is not None:
            raise failure

    def _next(self, live: dict[int, Connection]) -> tuple[int, tuple[str, Any] | None] | None:
        """The next message of any worker, or None for its end (a killed worker may leave half a
        message); None after a quiet second."""
        with self._reading:
            ready = connection.wait([r for r in live.values() if not r.closed], timeout=1.0)
            for k, r in live.items():
                if r in ready:
                    try:
                        message: tuple[str, Any] = r.recv()
                        return k, message
                    except (EOFError, OSError):  # gone, perhaps in the middle of a message
                        return k, None
        return None


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def work(task: Task, out: Connection, stop: Event) -> None:
    """The worker's loop (the target of a spawned process)."""
    from newsletter.pipeline import due_batches

    # Ctrl-C reaches the whole process group: the parent alone handles it and asks the workers to
    # stop (a worker interrupted in the middle of handing a batch over would leave half a message)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

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
                if os.getppid() != task.parent:
                    return  # nobody reads any more
                if stop.is_set():
                    break  # what is not built yet is not due any more in this run: the next one builds it
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
                if not _put(out, ("batch", item)):
                    return
                batches += 1
                if batches % COLLECT_EVERY == 0:
                    gc.collect()  # what cycles hold stays bounded
                t = time.perf_counter()
        _put(out, ("done", None))
    except BaseException as exc:  # noqa: B902  # reported to the parent, which raises it
        _put(out, ("error", _portable(exc)))
    finally:
        out.close()


def _put(out: Connection, item: tuple[str, Any]) -> bool:
    """Hand an item to the parent (it waits while the parent delivers the previous one), which reads
    until every worker has said its last word, even after asking them to stop; False once the parent
    is gone (the pipe is broken)."""
    try:
        out.send(item)
        return True
    except OSError:
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
