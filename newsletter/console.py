"""What the commands print: messages that `--quiet` silences, and tables of matches."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from newsletter.models import Match


def say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text)


def print_matches(matches: Sequence[Match], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(matches)} of {total} entries match", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("▲", justify="right")
    table.add_column("title")
    table.add_column("why")
    for i, m in enumerate(matches, 1):
        why = "; ".join(f"{h.term} ({h.field})" for h in m.hits)
        e = m.entry
        table.add_row(str(i), f"{m.score:g}", "" if e.upvotes is None else str(e.upvotes), e.title, why)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
