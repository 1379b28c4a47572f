"""`newsletter db copy`: move a whole state (SQLite or PostgreSQL) into another, empty one, in one
transaction on the target, and verify the row count of every table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.errors import StateError
from newsletter.store.base import Store
from newsletter.store.schema import TABLES

_CLAIMS = (TABLES["issues"].index("claimed_by"), TABLES["issues"].index("claim_until"))


@dataclass(frozen=True)
class Copied:
    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


def _unclaimed(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Claims belong to processes of the old state: the copy starts with none."""
    for row in rows:
        out = list(row)
        for i in _CLAIMS:
            out[i] = None
        yield tuple(out)


def copy_state(source: Store, target: Store, tables: Mapping[str, Sequence[str]] = TABLES) -> list[Copied]:
    """Copy every table (name -> columns); refuses a target that holds any row. Raises StateError when
    a count differs (the target's transaction is then rolled back: it stays empty)."""
    held = {t: n for t in tables if (n := target.count(t))}
    if held:
        raise StateError(f"{target.path}: the target state is not empty ({', '.join(f'{t}: {n} rows' for t, n in held.items())}); "
                         "copy into a new database or file")
    counts: list[Copied] = []
    with target.transaction():
        for table, columns in tables.items():
            rows = source.rows(table, columns)
            target.bulk_insert(table, _unclaimed(rows) if table == "issues" else rows, columns)
        counts = [Copied(t, source.count(t), target.count(t)) for t in tables]
        wrong = [c for c in counts if not c.ok]
        if wrong:
            raise StateError("the copy does not match its source, nothing was kept: " +
                             ", ".join(f"{c.table} {c.source} -> {c.target}" for c in wrong))
    return counts
