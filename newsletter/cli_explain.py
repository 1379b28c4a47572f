"""`newsletter explain PAPER`: why a paper did or did not reach a subscriber (or each); a thin
wrapper over `Deployment.explain` (newsletter/explain.py)."""

from __future__ import annotations

import argparse
import json
import os

from newsletter.console import say
from newsletter.deployment import Deployment
from newsletter.explain import Reason


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("explain", help="why a paper did (or did not) reach a subscriber",
                       description="What happened to one stored paper for each subscriber (or one): delivered in "
                                   "which issue; or not in any window, excluded by which term in which field, "
                                   "ranked below the cap (with the score of the last paper that made it), held "
                                   "back as delivered before, cut by the size budget, or the subscriber was "
                                   "paused, unsubscribed or bounced. Read from the stored papers and the ledger.")
    c.add_argument("paper", metavar="PAPER", help="an arXiv id, a paper URL (arXiv or Hugging Face), an entry id, "
                                                  "or words of its title")
    c.add_argument("--subscriber", metavar="EMAIL", help="only this subscriber")
    c.add_argument("--issue", metavar="ID", help="as of this issue (its subscriber's)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.set_defaults(run=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    dep = Deployment.open(args.file, args.state, os.environ)

    def each(reason: Reason) -> None:
        if args.json:
            print(json.dumps(reason.as_dict(), ensure_ascii=False))
        elif args.subscriber or args.issue:
            print(reason.sentence)
        else:
            print(f"{reason.subscriber}: {reason.sentence}")

    paper = dep.explain(args.paper, each, subscriber=args.subscriber, issue=args.issue)
    if not args.json:  # which paper the words named, after the answers
        say(args.quiet, f"(the paper: {paper.id}, \u201c{' '.join(paper.title.split())}\u201d)")
    return 0
