"""`newsletter subscribers …`: the editing commands, thin wrappers over newsletter.subscribers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from newsletter import editing, replay, roster
from newsletter.console import print_matches, say
from newsletter.deployment import Deployment
from newsletter.errors import ConfigError, StateError
from newsletter.models import Subscriber


def add_parser(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser],  # type: ignore[type-arg]
               cmd_validate: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("subscribers", help="list, add, change, pause or remove subscribers",
                       description="Edit subscribers wherever they live: in subscribers.yaml (comments and formatting kept, "
                                   "written atomically) or in the state store. Every edit is validated first; a bad "
                                   "edit changes nothing.")
    s = p.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    s.required = True
    c = s.add_parser("list", help="one line per subscriber", description="List subscribers.")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=cmd_sub_list)
    c = s.add_parser("show", help="one subscriber's settings", description="Show one subscriber.")
    c.add_argument("email")
    c.set_defaults(run=cmd_sub_show)
    c = s.add_parser("add", help="add a subscriber", description="Add a subscriber and show what the "
                                                             "profile would select among the stored entries.")
    c.add_argument("email")
    c.add_argument("--name")
    c.add_argument("--keyword", action="append", default=[], metavar="QUERY", help="repeatable")
    c.add_argument("--exclude", action="append", default=[], metavar="QUERY", help="repeatable")
    c.add_argument("--schedule", metavar="CRON")
    c.add_argument("--timezone", metavar="ZONE")
    c.add_argument("--max-entries", type=int, metavar="N")
    c.add_argument("--store", action="store_true", help="keep the subscriber in the state store, not the file "
                                                        "(for large lists)")
    c.set_defaults(run=cmd_sub_add)
    c = s.add_parser("set", help="change one setting or edit the keyword lists",
                     description="Set KEY to VALUE (keywords/exclude take several values), or edit the "
                                 "lists with --add-keyword/--remove-keyword/--add-exclude/--remove-exclude.")
    c.add_argument("email")
    c.add_argument("key", nargs="?", help="name, keywords, exclude, schedule, timezone, max_entries, "
                                          "min_upvotes, send_empty, paused")
    c.add_argument("values", nargs="*", metavar="VALUE")
    c.add_argument("--add-keyword", action="append", default=[], metavar="QUERY")
    c.add_argument("--remove-keyword", action="append", default=[], metavar="QUERY")
    c.add_argument("--add-exclude", action="append", default=[], metavar="QUERY")
    c.add_argument("--remove-exclude", action="append", default=[], metavar="QUERY")
    c.add_argument("--dry-run", action="store_true",
                   help="only show what a keyword/exclude change would gain and lose over the stored papers "
                        "of the last 30 days (and the issues they would have gone into); change nothing")
    c.set_defaults(run=cmd_sub_set)
    for name, helptext in (("remove", "remove a subscriber"), ("pause", "stop sending, keep the profile"),
                           ("resume", "start sending again (after a pause, failures or an unsubscribe)"),
                           ("unsubscribe", "record an unsubscribe, as the one-click link does")):
        c = s.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        c.add_argument("email")
        if name == "pause":
            c.add_argument("--until", type=_day, metavar="DATE",
                           help="resume on this day (YYYY-MM-DD, the subscriber's time zone) with one issue "
                                "that catches up on the whole pause")
        c.set_defaults(run=cmd_sub_simple, action_name=name)
    c = s.add_parser("import", help="add subscribers from a CSV, JSON Lines or YAML file to the state store",
                     description="Import subscribers into the state store. CSV: a header row naming the columns "
                                 "(email, name, keywords, exclude, schedule, timezone, max_entries, min_upvotes, "
                                 "send_empty; several queries separated by ';'). JSON Lines: one object per line, "
                                 "as `export --format jsonl` writes. YAML: the subscribers: schema of "
                                 "subscribers.yaml. Every row is validated first; one bad row imports nothing.")
    c.add_argument("path", type=Path)
    c.add_argument("--format", choices=roster.FORMATS, help="default: from the file name")
    c.add_argument("--replace", action="store_true", help="overwrite the profiles of addresses already in the store")
    c.set_defaults(run=cmd_sub_import)
    c = s.add_parser("export", help="write the store-held subscribers as CSV, JSON Lines or YAML",
                     description="Export the subscribers kept in the state store (re-importable).")
    c.add_argument("--format", choices=roster.FORMATS, default="jsonl")
    c.add_argument("--all", action="store_true", help="include the subscribers defined in the file")
    c.add_argument("--out", type=Path, help="write here instead of standard output")
    c.set_defaults(run=cmd_sub_export)
    c = s.add_parser("validate", help="same as `newsletter validate`", description="Check the file.")
    c.set_defaults(run=cmd_validate)



def _dep(args: argparse.Namespace) -> Deployment:
    return Deployment.open(args.file, args.state, os.environ)


def _row(s: Subscriber, state: str) -> dict[str, Any]:
    return {**roster.as_dict(s), "home": s.home, "state": state}


def cmd_sub_list(args: argparse.Namespace) -> int:
    dep = _dep(args)
    n = 0
    with dep.reader() as store:  # opened first: a state that cannot be read prints nothing
        if args.json:
            print("[")
        for batch in roster.Roster(dep.config, store).batches():
            for m in batch:
                r = _row(m.subscriber, m.standing.state)
                if args.json:  # a JSON array, streamed
                    print(("," if n else "") + json.dumps(r, ensure_ascii=False))
                    n += 1
                    continue
                n += 1
                state = "" if m.standing.active else f" [{m.standing.state}]"
                home = " (store)" if r["home"] == "store" else ""
                print(f"{r['email']}{state}{home}  {r['schedule']} {r['timezone']}  {'; '.join(r['keywords'])}")
    if args.json:
        print("]")
    else:
        say(args.quiet, f"{n} subscribers")
    return 0


def cmd_sub_show(args: argparse.Namespace) -> int:
    dep = _dep(args)
    with dep.reader() as store:
        member = roster.Roster(dep.config, store).member(args.email)
    if member is None:
        raise ConfigError(f"no subscriber '{args.email}' in {args.file} or the state store")
    s, st = member.subscriber, member.standing
    print(f"email:       {s.email}")
    print(f"name:        {s.name or '-'}")
    print(f"keywords:    {'; '.join(s.keywords)}")
    print(f"exclude:     {'; '.join(s.exclude) or '-'}")
    print(f"schedule:    {s.schedule} ({s.timezone})")
    print(f"max_entries: {s.max_entries}   min_upvotes: {s.min_upvotes}   send_empty: {s.send_empty}")
    print(f"lives in:    {'the state store' if s.home == 'store' else args.file}")
    print(f"state:       {st.state}{': ' + st.reason if st.reason and st.reason != st.state else ''}")
    return 0


def _show_effect(args: argparse.Namespace, dep: Deployment, sub: Subscriber | None) -> None:
    """What the changed profile would select among the stored entries (top 10)."""
    from newsletter.issues import profile_of
    from newsletter.matching import EntryIndex

    if sub is None or not dep.state.exists() or args.quiet:
        return
    try:
        with dep.reader() as store:
            entries = store.entries()
    except StateError as exc:  # the edit is saved: say why the preview is missing, and still succeed
        print(f"warning: saved, but the stored papers cannot be read to show its effect: {exc}", file=sys.stderr)
        return
    print_matches(EntryIndex(entries).select(profile_of(sub), limit=10), len(entries))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cmd_sub_add(args: argparse.Namespace) -> int:
    dep = _dep(args)
    done = editing.add(dep, os.environ, _now(), to_store=args.store, email=args.email, name=args.name,
                       keywords=args.keyword, exclude=args.exclude, schedule=args.schedule,
                       timezone=args.timezone, max_entries=args.max_entries)
    say(args.quiet, f"{args.file if done.home == 'file' else dep.state}: {done.what}")
    _show_effect(args, dep, done.subscriber)
    return 0


def cmd_sub_set(args: argparse.Namespace) -> int:
    changes = []
    if args.key is not None:
        if not args.values:
            raise ConfigError(f"give a value for '{args.key}'")
        changes.append(editing.Change("set", args.key, tuple(args.values)))
    for op, key, values in (("remove", "keywords", args.remove_keyword), ("add", "keywords", args.add_keyword),
                            ("remove", "exclude", args.remove_exclude), ("add", "exclude", args.add_exclude)):
        if values:
            changes.append(editing.Change(op, key, tuple(values)))
    if not changes:
        raise ConfigError("give KEY VALUE or one of --add-keyword/--remove-keyword/--add-exclude/--remove-exclude")
    dep = _dep(args)
    profile_edit = any(c.key in ("keywords", "exclude") for c in changes)
    # a keyword edit is replayed over the stored papers of the last 30 days, before it is saved
    effect = editing.replay_changes(dep, args.email, changes, _now() - timedelta(days=replay.WINDOW_DAYS)) \
        if profile_edit and dep.state.exists() else None
    if args.dry_run:
        if effect is None:
            raise ConfigError("--dry-run replays a change of keywords or excludes (over the stored papers)")
        print("\n".join(effect.lines()))
        say(args.quiet, "(dry run: nothing was changed)")
        return 0
    done = editing.set_fields(dep, os.environ, args.email, changes)
    say(args.quiet, f"{args.file if done.home == 'file' else dep.state}: {done.what}")
    if effect is not None and not args.quiet:
        print("\n".join(effect.lines()))
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date: give it as YYYY-MM-DD") from None


def cmd_sub_simple(args: argparse.Namespace) -> int:
    dep = _dep(args)
    if args.action_name == "remove":
        done = editing.remove(dep, os.environ, args.email)
    elif args.action_name == "unsubscribe":
        done = editing.unsubscribe(dep, args.email, _now())
    else:
        done = editing.pause(dep, os.environ, args.email, _now(), on=args.action_name == "pause",
                             until=getattr(args, "until", None))
    say(args.quiet, f"{args.file if done.home == 'file' else dep.state}: {done.what}")
    return 0


def cmd_sub_import(args: argparse.Namespace) -> int:
    dep = _dep(args)
    subs = roster.read_import(args.path, dep.config, dict(os.environ), args.format)
    with dep.store() as store:
        n = roster.import_subscribers(dep.config, store, subs, _now(), replace=args.replace)
    say(args.quiet, f"imported {n} subscribers into {dep.state}")
    return 0


def cmd_sub_export(args: argparse.Namespace) -> int:
    import sys

    dep = _dep(args)
    with dep.reader() as store:
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as out:
                n = roster.export(dep.config, store, out, args.format, include_file=args.all)
            say(args.quiet, f"wrote {n} subscribers to {args.out}")
        else:
            roster.export(dep.config, store, sys.stdout, args.format, include_file=args.all)
    return 0
