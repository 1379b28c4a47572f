"""The PostgreSQL store (psycopg 3): several workers on several machines share one database.

The URL names the database (`postgresql://user@host:5432/db`, or `postgresql:///db?host=/run/postgresql`
for a local socket); the password never comes from it: NEWSLETTER_DB_PASSWORD, or libpq's own
PGPASSWORD / ~/.pgpass. The connection runs in autocommit; `transaction()` groups writes.
Claims are taken with `SELECT ... FOR UPDATE SKIP LOCKED`: workers claiming at the same moment get
disjoint rows without waiting on each other. Schema creation and upgrades run under an advisory
lock, so workers started together upgrade once. A snapshot is one REPEATABLE READ transaction that
is rolled back at close: previews and dry runs see one consistent state and their writes vanish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from newsletter.errors import StateError
from newsletter.store import rows as R
from newsletter.store.base import Store
from newsletter.store.rows import ISSUE_COLUMNS, IssueRow
from newsletter.store.schema import POSTGRES_UPGRADES, POSTGRES_V2, SCHEMA_VERSION, TABLES, statements

PASSWORD_VARIABLE = "NEWSLETTER_DB_PASSWORD"
# what the server or the network does to a store already open: the connection lost, the server shut
# down, a permission taken away. Each becomes a StateError naming the state (the URL: no password).
# Integrity errors stay themselves: the store's callers act on them.
_FAILURES = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.InsufficientPrivilege)
_SCHEMA_LOCK = 0x6E6C7374  # pg_advisory_xact_lock key held while the schema is created or upgraded


def check_url(url: str) -> str:
    """The URL as given, after checking it parses and carries no password; raises StateError."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StateError(f"{url}: not a PostgreSQL URL: {exc}") from None
    if params.get("password"):
        raise StateError("the PostgreSQL URL carries a password: remove it from the URL and export "
                         f"{PASSWORD_VARIABLE} (or PGPASSWORD, or use ~/.pgpass) instead")
    return url


def connect(url: str, env: Mapping[str, str], *, autocommit: bool = True) -> psycopg.Connection[Any]:
    check_url(url)
    extra: dict[str, Any] = {"application_name": "newsletter"}
    if env.get(PASSWORD_VARIABLE):
        extra["password"] = env[PASSWORD_VARIABLE]
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=30, **extra)
    except psycopg.Error as exc:
        raise StateError(f"{url}: cannot connect to the PostgreSQL state: {str(exc).strip()}") from None


class PostgresStore(Store):
    """One connection to a PostgreSQL state."""

    integrity_errors = (psycopg.IntegrityError,)

    def __init__(self, location: str, env: Mapping[str, str] | None = None) -> None:
        self.path = location
        self._snapshot = False
        self._sql: dict[str, str] = {}
        self.conn = connect(location, os.environ if env is None else env)
        self._open()

    def _open(self) -> None:
        try:
            self.version()  # refuse an unrelated database before changing anything in it
            self.upgraded = self.upgrade()
        except psycopg.Error as exc:
            self.conn.close()
            raise StateError(f"{self.path}: cannot use the PostgreSQL state: {str(exc).strip()}") from exc
        except StateError:
            self.conn.close()
            raise

    @classmethod
    def snapshot(cls, location: Path | str) -> Store:
        try:
            return cls._snapshot_of(location)
        except StateError:
            # another process upgraded the schema after this snapshot began and before it could take
            # the schema lock (its own upgrade, rolled back at close, then fails): a new snapshot sees
            # the upgraded schema; any other failure fails again the same way
            return cls._snapshot_of(location)

    @classmethod
    def _snapshot_of(cls, location: Path | str) -> Store:
        store = object.__new__(cls)
        store.path = str(location)
        store._snapshot = True
        store._sql = {}
        store.conn = connect(str(location), os.environ, autocommit=False)
        store.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        store.conn.execute("SELECT 1")  # opens the transaction every later block nests in
        store._open()
        return store

    def close(self) -> None:
        if self.conn.closed:
            return
        if self._snapshot:
            self.conn.rollback()
        self.conn.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _FAILURES as exc:
            raise StateError(f"{self.path}: the PostgreSQL state failed: {str(exc).strip() or type(exc).__name__}"
                             ) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._guard(), self.conn.transaction():
            yield

    def _q(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        query = self._sql.get(sql)
        if query is None:
            query = self._sql[sql] = sql.replace("?", "%s")
        with self._guard():
            return self.conn.execute(query, args)  # type: ignore[arg-type]

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._guard(), self.conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), rows)  # type: ignore[arg-type]

    # --- schema ------------------------------------------------------------------------------

    def version(self) -> int:
        tables = {r[0] for r in self.conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        return self._version_of(tables, "this database holds other tables and no newsletter state; it was left "
                                        "untouched: create a database for newsletter (createdb) and pass its URL")

    def upgrade(self) -> tuple[int, int]:
        """Create or upgrade the schema; returns (from, to). Idempotent; one worker at a time."""
        if self.version() == SCHEMA_VERSION:
            return SCHEMA_VERSION, SCHEMA_VERSION
        with self.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (_SCHEMA_LOCK,))
            current = self.version()
            if current == SCHEMA_VERSION:
                return current, current
            start = current
            if current == 0:
                for statement in statements(POSTGRES_V2):
                    self.conn.execute(statement)  # type: ignore[call-overload]
                self.conn.execute("INSERT INTO meta VALUES ('schema', '2')")
                start = 2
            for version in range(start + 1, SCHEMA_VERSION + 1):
                for statement in statements(POSTGRES_UPGRADES[version]):
                    self.conn.execute(statement)  # type: ignore[call-overload]
            self.conn.execute("UPDATE meta SET value=%s WHERE key='schema'", (str(SCHEMA_VERSION),))
        return current, SCHEMA_VERSION

    def _serialise(self, what: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", (_SCHEMA_LOCK, what))

    # --- claims ------------------------------------------------------------------------------

    def claim_pending(self, now: datetime, owner: str, until: datetime, limit: int,
                      stealable: Callable[[str, datetime], bool], *, subscribers: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> list[IssueRow]:
        if subscribers is not None and not subscribers:
            return []
        with self.transaction():
            # Whose claims may be taken over: per holder, the latest lease `stealable` gives up
            # (a lease that ran out, or every lease of a process on this host that is gone).
            give_up: dict[str, str] = {}
            for holder, lease in self.conn.execute(
                    "SELECT claimed_by, claim_until FROM issues WHERE status='pending' AND claimed_by IS NOT NULL "
                    "AND claimed_by <> %s AND claim_until IS NOT NULL GROUP BY 1, 2", (owner,)):
                if (lease > give_up.get(holder, "")) and stealable(holder, R.dt(lease)):  # type: ignore[arg-type]
                    give_up[holder] = lease
            sql = (f"SELECT {ISSUE_COLUMNS} FROM issues WHERE status='pending' "
                   "AND (next_attempt IS NULL OR next_attempt <= %s) "
                   "AND (claimed_by IS NULL OR claimed_by = %s OR claim_until IS NULL "
                   "OR EXISTS (SELECT 1 FROM unnest(%s::text[], %s::text[]) AS g(holder, lease) "
                   "WHERE g.holder = issues.claimed_by AND issues.claim_until <= g.lease))")
            args: list[Any] = [R.ts(now), owner, list(give_up), list(give_up.values())]
            if subscribers is not None:
                sql += " AND subscriber = ANY(%s)"
                args.append(list(subscribers))
            if exclude:
                sql += " AND NOT (id = ANY(%s))"
                args.append(list(exclude))
            sql += " ORDER BY slot, subscriber LIMIT %s FOR UPDATE SKIP LOCKED"
            args.append(limit)
            taken = [R.issue(r) for r in self.conn.execute(sql, args)]  # type: ignore[call-overload]
            if taken:
                self.conn.execute("UPDATE issues SET claimed_by=%s, claim_until=%s WHERE id = ANY(%s)",
                                  (owner, R.ts(until), [r.id for r in taken]))
        return [replace(row, claimed_by=owner, claim_until=until) for row in taken]

    # --- db copy -----------------------------------------------------------------------------

    def bulk_insert(self, table: str, rows: Iterable[Sequence[Any]], columns: Sequence[str] | None = None) -> None:
        with self._guard(), self.conn.cursor() as cur, cur.copy(  # type: ignore[call-overload]
                f"COPY {table} ({', '.join(TABLES[table] if columns is None else columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def rows(self, table: str, columns: Sequence[str] | None = None) -> Iterator[tuple[Any, ...]]:
        with self._guard(), self.transaction(), self.conn.cursor(name=f"copy_{table}") as cur:
            cur.itersize = 2000
            cur.execute(f"SELECT {', '.join(TABLES[table] if columns is None else columns)} "  # type: ignore[call-overload]
                        f"FROM {table}")
            yield from cur

