"""What the shared SQL of the store needs from a dialect (sqlite.py, postgres.py): one statement,
many rows, a transaction. The store's parts (base.py, history.py, people.py) are written against it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


class Queries:
    path: Path | str  # the file, or the URL without its password: for messages
    integrity_errors: tuple[type[Exception], ...] = ()

    def _q(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Execute one statement (with `?` placeholders); returns a cursor (iterable, fetchone, rowcount)."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def count(self, table: str) -> int:
        return int(self._q(f"SELECT count(*) FROM {table}").fetchone()[0])
