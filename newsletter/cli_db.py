"""`newsletter db ...`: the state store's schema and moves between stores.

    newsletter db upgrade                        create or upgrade the schema (also done on every start)
    newsletter db copy --to postgresql://...     copy the whole state into another, empty one; verify counts
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from newsletter.config import load
from newsletter.deployment import resolve_state
from newsletter.store import Location, Store, location
from newsletter.store.copy import copy_state
from newsletter.store.schema import TABLES
from newsletter.store_readers import READER_TABLES, ReaderStore


def add_parser(sub: Any, parser: argparse.ArgumentParser) -> None:
    """Register `db` under `sub`; `--state` of `parser` learns to take a URL."""
    db = sub.add_parser("db", help="the state store: upgrade its schema, copy it to PostgreSQL",
                        description="Manage the state store (a SQLite file or a PostgreSQL database).")
    dbsub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", parser_class=type(parser))
    dbsub.required = True
    c = dbsub.add_parser("upgrade", help="create or upgrade the schema (also done at every start)",
                         description="Create the schema of a new state or upgrade an older one, in one "
                                     "transaction; a state written by a newer newsletter is refused.")
    c.set_defaults(run=cmd_upgrade)
    c = dbsub.add_parser("copy", help="copy the whole state into another, empty one and verify the counts",
                         description="Copy entries, subscribers, subscriber states, issues (the ledger), "
                                     "issue entries, pending issues' message bytes, source cursors and the reader pages' tables (ratings, "
                                     "sign-ups, bounces, link versions) from --state into TO, in one "
                                     "transaction, then compare the row count of every table. Stop the "
                                     "workers first: claims are not copied.")
    c.add_argument("--to", required=True, type=location, metavar="TO",
                   help="the target: a postgresql:// URL (or a new SQLite file)")
    c.set_defaults(run=cmd_copy)


def _state(args: argparse.Namespace) -> Location:
    setting = None
    if not args.state and args.file.exists():
        setting = getattr(load(args.file, os.environ).settings, "state", None)
    return resolve_state(args.file, args.state, setting)


def cmd_upgrade(args: argparse.Namespace) -> int:
    state = _state(args)
    with Store(state) as store:
        before, after = store.upgraded
    if args.quiet:
        return 0
    if before == after:
        print(f"{state}: schema {after}, up to date")
    else:
        print(f"{state}: schema {before or 'none'} -> {after}")
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    state = _state(args)
    with ReaderStore(state) as source, ReaderStore(args.to) as target:  # the readers' tables too
        counts = copy_state(source, target, {**TABLES, **READER_TABLES})
    if not args.quiet:
        print(f"copied {state} -> {args.to}")
        for c in counts:
            print(f"  {c.table:<17} {c.source:>10,} rows -> {c.target:>10,}  ok")
    return 0
