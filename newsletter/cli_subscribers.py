"""`newsletter subscribers …`: the editing commands, thin wrappers over newsletter.subscribers."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from newsletter import cli
from newsletter.errors import ConfigError
from newsletter.models import Config
from newsletter.store import Store


def add_parser(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser],  # type: ignore[type-arg]
               cmd_validate: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("subscribers", help="list, add, change, pause or remove subscribers",
                       description="Edit subscribers.yaml keeping its comments and formatting. Every edit "
                                   "is validated first and written atomically; a bad edit changes nothing.")
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
    c.set_defaults(run=cmd_sub_set)
    for name, helptext in (("remove", "remove a subscriber"), ("pause", "stop sending, keep the profile"),
                           ("resume", "start sending again")):
        c = s.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        c.add_argument("email")
        c.set_defaults(run=cmd_sub_simple, action_name=name)
    c = s.add_parser("validate", help="same as `newsletter validate`", description="Check the file.")
    c.set_defaults(run=cmd_validate)



def cmd_sub_list(args: argparse.Namespace) -> int:
    config = cli._config(args)
    rows: list[dict[str, Any]] = [{"email": s.email, "name": s.name, "keywords": list(s.keywords), "exclude": list(s.exclude),
             "schedule": s.schedule, "timezone": s.timezone, "max_entries": s.max_entries,
             "paused": s.paused, "unsubscribed": s.unsubscribed} for s in config.subscribers]
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    for r in rows:
        state = " [paused]" if r["paused"] else " [unsubscribed]" if r["unsubscribed"] else ""
        print(f"{r['email']}{state}  {r['schedule']} {r['timezone']}  {'; '.join(r['keywords'])}")
    cli._say(args, f"{len(rows)} subscribers")
    return 0


def cmd_sub_show(args: argparse.Namespace) -> int:
    config = cli._config(args)
    s = config.subscriber(args.email)
    if s is None:
        raise ConfigError(f"no subscriber '{args.email}' in {args.file}")
    print(f"email:       {s.email}")
    print(f"name:        {s.name or '-'}")
    print(f"keywords:    {'; '.join(s.keywords)}")
    print(f"exclude:     {'; '.join(s.exclude) or '-'}")
    print(f"schedule:    {s.schedule} ({s.timezone})")
    print(f"max_entries: {s.max_entries}   min_upvotes: {s.min_upvotes}   send_empty: {s.send_empty}")
    print(f"state:       {'paused' if s.paused else 'unsubscribed' if s.unsubscribed else 'active'}")
    return 0


def _edit(args: argparse.Namespace, change: object) -> Config:
    from newsletter import subscribers

    config, what = subscribers.edit(args.file, change, os.environ)  # type: ignore[arg-type]
    cli._say(args, f"{args.file}: {what}")
    return config


def _show_effect(args: argparse.Namespace, config: Config, email: str) -> None:
    """What the changed profile would select among the stored entries (top 10)."""
    from newsletter.issues import profile_of
    from newsletter.matching import EntryIndex

    sub = config.subscriber(email)
    state = cli._state_path(args)
    if sub is None or not state.exists() or args.quiet:
        return
    with Store(state) as store:
        entries = store.entries()
    matches = EntryIndex(entries).select(profile_of(sub), limit=10)
    cli._print_matches(matches, len(entries))


def cmd_sub_add(args: argparse.Namespace) -> int:
    from newsletter import subscribers

    config = _edit(args, subscribers.add(args.email, name=args.name, keywords=args.keyword,
                                         exclude=args.exclude, schedule=args.schedule,
                                         timezone=args.timezone, max_entries=args.max_entries))
    _show_effect(args, config, args.email)
    return 0


def cmd_sub_set(args: argparse.Namespace) -> int:
    from newsletter import subscribers

    lists = (args.add_keyword, args.remove_keyword, args.add_exclude, args.remove_exclude)
    if args.key is None and not any(lists):
        raise ConfigError("give KEY VALUE or one of --add-keyword/--remove-keyword/--add-exclude/--remove-exclude")
    config = None
    if args.key is not None:
        if not args.values:
            raise ConfigError(f"give a value for '{args.key}'")
        config = _edit(args, subscribers.set_value(args.email, args.key, args.values))
    if args.add_keyword or args.remove_keyword:
        config = _edit(args, subscribers.change_list(args.email, "keywords", add=args.add_keyword,
                                                     remove=args.remove_keyword))
    if args.add_exclude or args.remove_exclude:
        config = _edit(args, subscribers.change_list(args.email, "exclude", add=args.add_exclude,
                                                     remove=args.remove_exclude))
    if config is not None and (args.key in ("keywords", "exclude") or any(lists)):
        _show_effect(args, config, args.email)
    return 0


def cmd_sub_simple(args: argparse.Namespace) -> int:
    from newsletter import subscribers

    change = {"remove": lambda: subscribers.remove(args.email),
              "pause": lambda: subscribers.flag(args.email, "paused", True),
              "resume": lambda: subscribers.flag(args.email, "paused", False)}[args.action_name]()
    _edit(args, change)
    return 0
