"""`newsletter bounces PATH`: read delivery status notifications and suppress bouncing addresses;
a thin wrapper over newsletter.bounces."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

from newsletter import bounces
from newsletter.console import say
from newsletter.deployment import Deployment
from newsletter.store_readers import ReaderStore


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("bounces", help="read bounce reports (DSNs) from a Maildir or mbox",
                       description="Read delivery status notifications (RFC 3464) from a Maildir or an mbox file and "
                                   "match them to the issues sent: a hard bounce suppresses the address at once, "
                                   f"soft bounces after {bounces.SOFT_LIMIT} within "
                                   f"{bounces.SOFT_WINDOW.days} days. The box is only read; other mail is left alone.")
    c.add_argument("path", type=Path, metavar="PATH", help="a Maildir folder or an mbox file")
    c.set_defaults(run=cmd_bounces)


def cmd_bounces(args: argparse.Namespace) -> int:
    dep = Deployment.open(args.file, args.state, os.environ)
    bounces.check_box(args.path)  # before the state is opened (and perhaps created)
    with ReaderStore(dep.state) as store:
        s = bounces.process(store, dep.config, args.path, datetime.now(timezone.utc))
    say(args.quiet, f"{args.path}: {s.messages} messages: {s.reports} new bounce reports "
                    f"({len(s.hard)} hard, {len(s.soft)} soft), {s.seen} read before, "
                    f"{s.unrelated} not about our mail (left alone)")
    for email in dict.fromkeys(s.suppressed):
        say(args.quiet, f"suppressed: {email} (`newsletter subscribers resume {email}` lifts it)")
    return 0
