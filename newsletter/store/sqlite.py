"""The SQLite store: one file, WAL, `synchronous=FULL` (each commit durable). Writers serialise on
`BEGIN IMMEDIATE`, so a claim is simply read-then-update inside one write transaction.
The schema is versioned: `upgrade()` brings an older file up to date and refuses a newer one.
"""

from __future__ import annotations

import os
import tempfile
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from typing import Any

from newsletter.errors import StateError
from newsletter.store import rows as R
from newsletter.store.base import Store
from newsletter.store.rows import LEAN_COLUMNS, IssueRow, marks
from newsletter.store.schema import SCHEMA_VERSION, SQLITE_UPGRADES, SQLITE_V1, statements

# The write-ahead log is copied into the file when it holds this many pages (SQLite's default: 1,000,
# ~4 MB). A `send` commits each pending issue's ~30 KB of message bytes and frees them once it is
# delivered; later issues reuse those pages, and a page written several times between two copies is
# copied once. With ~80 MB between copies a 100,000-subscriber `send` commits in about three
# quarters of the time (bench/end_to_end.py: the record stage 41-43 s -> 29-33 s, summed over its
# processes). After a copy the log file is cut back to at most this size.
WAL_PAGES = 20_000


class SqliteStore(Store):
    """One open state file."""

    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, location: Path | str) -> None:
        path = Path(location)
        self.path = path
        if path.exists() and not path.is_file():
            raise StateError(f"{path}: the state must be a file; this is a folder or a device")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StateError(f"{path}: cannot create the state file: {path.parent} is not a folder") from None
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state folder: {exc.strerror}") from None
        if not path.exists():  # made private from the start: it holds signed links and addresses
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError:
                pass  # made by another process meanwhile, or not makeable: SQLite says which below
        try:
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=30000")
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot use the state file: {exc}") from exc
        _private(path)

    def _setup(self) -> None:
        # Switching a new file to WAL can answer "locked" at once (no busy handler) when another
        # process creates the same file at the same moment: retry for a while.
        for attempt in range(100):
            try:
                self.version()  # refuse an unrelated database before changing anything in it
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                # Some SQLite builds (Debian's, pyenv's) default to overwriting freed pages with
                # zeros: each sent issue's ~30 KB of message bytes, dropped once delivered, was written
                # again as zeros (the delivering process wrote more to disk than the builders did).
                # FAST clears what is deleted from b-tree pages and leaves freed pages to be reused.
                self.db.execute("PRAGMA secure_delete=FAST")
                self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                self.db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * int(page)}")
                self.upgraded = self.upgrade()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    @classmethod
    def snapshot(cls, location: Path | str) -> Store:
        """An in-memory copy of the state file (or an empty one): changes never reach the disk."""
        path = Path(location)
        store = object.__new__(cls)
        store.path = path
        store.db = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            if not path.is_file():
                raise StateError(f"{path}: the state must be a file; this is a folder or a device")
            try:
                _copy_read_only(path, store.db)
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        try:
            store.upgraded = store.upgrade()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        return store

    @classmethod
    def reader(cls, location: Path | str) -> Store:
        """The state file read in place, as one consistent read transaction, without copying it
        (read-only commands on a state of any size). Where that cannot be (no file yet, a schema
        this release upgrades) it is a `snapshot`."""
        path = Path(location)
        if not path.is_file():
            return cls.snapshot(location)
        store = object.__new__(cls)
        store.path = path
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        try:
            try:
                store.db = sqlite3.connect(uri, uri=True, isolation_level=None)
                store.db.execute("BEGIN")
                current = store.version()  # the first read starts the transaction's snapshot
            except sqlite3.OperationalError as exc:  # a folder SQLite cannot make the WAL index in
                if "unable to open" not in str(exc):
                    raise
                store.db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
                current = store.version()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot read the state file: {exc}") from exc
        if current != SCHEMA_VERSION:
            store.db.close()
            return cls.snapshot(location)
        store.upgraded = (current, current)
        return store

    def version(self) -> int:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return self._version_of(tables, "this is not a newsletter state file (an unrelated SQLite database?); "
                                        "it was left untouched: pass another --state")

    def upgrade(self) -> tuple[int, int]:
        """Create or upgrade the schema; returns (from, to). Idempotent."""
        with self.transaction():
            current = self.version()
            if current == SCHEMA_VERSION:
                return current, current
            if current == 0:
                for statement in statements(SQLITE_V1):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO meta VALUES ('schema', '1')")
                start = 1
            else:
                start = current
            for version in range(start + 1, SCHEMA_VERSION + 1):
                for statement in statements(SQLITE_UPGRADES[version]):
                    self.db.execute(statement)
            self.db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        return current, SCHEMA_VERSION

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """What the file system does to a state already open (a folder made read-only, a full disk,
        a lock held too long, a page overwritten) becomes a StateError naming the file."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # the store's callers act on these
        except sqlite3.DatabaseError as exc:  # read-only, full, locked too long, a corrupt page
            raise StateError(f"{self.path}: the state file failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._guard():
            self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        try:
            with self._guard():
                self.db.execute("COMMIT")
        except StateError:
            if self.db.in_transaction:  # a commit that failed leaves the transaction open: nothing is kept
                self.db.execute("ROLLBACK")
            raise

    def _q(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._guard():
            return self.db.execute(sql, args)

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._guard():
            self.db.executemany(sql, rows)

    def claim_pending(self, now: datetime, owner: str, until: datetime, limit: int,
                      stealable: Callable[[str, datetime], bool], *, subscribers: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> list[IssueRow]:
        # the candidates in claim order without their bytes (the index holds that order: SQLite's
        # planner would sort every pending issue instead), then the bytes of those taken
        sql = (f"SELECT {LEAN_COLUMNS} FROM issues INDEXED BY issues_claim WHERE status='pending' "
               "AND (next_attempt IS NULL OR next_attempt <= ?)")
        args: list[object] = [R.ts(now)]
        if subscribers is not None:
            if not subscribers:
                return []
            sql += f" AND subscriber IN ({marks(len(subscribers))})"
            args.extend(subscribers)
        skip = set(exclude)
        taken: list[IssueRow] = []
        with self.transaction():
            for r in self.db.execute(sql + " ORDER BY slot, subscriber", args):
                row = R.issue(r)
                if row.id in skip:
                    continue
                holder = row.claimed_by
                if holder and holder != owner and row.claim_until and not stealable(holder, row.claim_until):
                    continue
                taken.append(row)
                if len(taken) >= limit:
                    break
            self.db.executemany("UPDATE issues SET claimed_by=?, claim_until=? WHERE id=?",
                                [(owner, R.ts(until), row.id) for row in taken])
            found = self.messages([row.id for row in taken])
        return [replace(row, message=found.get(row.id), claimed_by=owner, claim_until=until) for row in taken]


def _private(path: Path) -> None:
    """A state file (known now to be one) that others can read, made by a release that followed the
    umask, is made its owner's only; SQLite gives its -wal and -shm files the same mode."""
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass  # not ours to change (another user's file, a read-only mount): left as it is


def _copy_read_only(path: Path, into: sqlite3.Connection) -> None:
    """Copy the file into `into` without writing anything beside it. In a folder that cannot be
    written (a read-only mount, a folder of another user) SQLite cannot make the shared-memory file a
    WAL file needs, even to read: the file is then read as immutable (nobody can be writing it)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        source = sqlite3.connect(uri, uri=True)
        try:
            source.backup(into)
        finally:
            source.close()
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or os.access(path.parent, os.W_OK) and not _immutable_dir(path.parent):
            raise
        source = sqlite3.connect(uri + "&immutable=1", uri=True)
        try:
            source.backup(into)
        finally:
            source.close()


def _immutable_dir(folder: Path) -> bool:
    """Whether files can be made in `folder` (os.access says yes to root whatever the mount or flags)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return False
    except OSError:
        return True
