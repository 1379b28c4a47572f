"""Command line: each command parses its arguments, calls the library, and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from datetime import datetime, timedelta, timezone
from pathlib import Path

from newsletter import __version__, replay
from newsletter.config import load
from newsletter.console import print_matches, say
from newsletter.deployment import Deployment, read_state, resolve_state
from newsletter.entries import to_json
from newsletter.errors import ConfigError, NewsletterError, PartialDeliveryError, QuerySyntaxError
from newsletter.models import Config
from newsletter.roster import Roster
from newsletter.store import Location, Store, location

if TYPE_CHECKING:
    from newsletter import ingest

EPILOG = "Docs: README.md. Exit codes: 0 ok, 1 error, 2 usage or configuration, 3 some deliveries failed."


_AGO = re.compile(r"(\d+)([dhw])")


def _when(value: str) -> datetime:
    """An ISO 8601 date-time, or a span back from now: 30d, 12h, 2w."""
    ago = _AGO.fullmatch(value.strip())
    if ago:
        n, unit = int(ago[1]), ago[2]
        return datetime.now(timezone.utc) - timedelta(**{{"d": "days", "h": "hours", "w": "weeks"}[unit]: n})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a date-time (use ISO 8601, e.g. 2026-11-27T07:00 or 2026-11-27T07:00+01:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # usage errors: exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="newsletter", description="Personal research-paper digests by email.",
                epilog=EPILOG)
    p.add_argument("--file", "-f", type=Path, default=Path("subscribers.yaml"),
                   help="the subscribers file (default: subscribers.yaml)")
    p.add_argument("--state", type=location, help="the state: a SQLite file (default: .newsletter/state.sqlite3 "
                   "beside the subscribers file) or a postgresql:// URL (password from NEWSLETTER_DB_PASSWORD, "
                   "PGPASSWORD or ~/.pgpass)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    p.add_argument("--verbose", "-v", action="count", default=0,
                   help="print every step (-vv: every message sent, when not on a terminal)")
    p.add_argument("--version", action="version", version=f"newsletter {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("validate", help="check the subscribers file and report every problem",
                       description="Check the subscribers file; every problem is reported as FILE:LINE:COL.")
    c.set_defaults(run=cmd_validate)

    c = sub.add_parser("ingest", help="read entries from files, URLs or the configured sources",
                       description="Ingest entries. Without PATH, ingest the sources configured in "
                                   "newsletter.sources.")
    c.add_argument("paths", nargs="*", metavar="PATH_OR_URL")
    c.add_argument("--format", choices=("hf-listing", "hf-daily", "arxiv", "feed", "file"),
                   help="force the input format instead of detecting it")
    c.set_defaults(run=cmd_ingest)

    c = sub.add_parser("entries", help="list stored entries", description="List stored entries.")
    c.add_argument("--json", action="store_true", help="print a JSON array (re-ingestible with ingest)")
    c.add_argument("--since", type=_when, help="only entries first seen after this time")
    c.set_defaults(run=cmd_entries)

    c = sub.add_parser("match", help="show what a query or a subscriber's profile selects",
                       description="Rank the stored entries against queries (any of them) or a "
                                   "subscriber's profile, with the reasons.")
    c.add_argument("queries", nargs="*", metavar="QUERY")
    c.add_argument("--subscriber", metavar="EMAIL", help="use this subscriber's keywords and excludes")
    c.add_argument("--exclude", action="append", default=[], metavar="QUERY", help="exclude query")
    c.add_argument("--since", type=_when, help="only entries first seen after this time (ISO, or 30d / 12h / 2w "
                                               "back from now)")
    c.add_argument("--limit", type=int, default=20, help="at most N results (default 20)")
    c.add_argument("--diff", action="store_true",
                   help="QUERY is OLD NEW: the stored papers replacing OLD by NEW would gain and lose over "
                        "--since (default 30d), for the queries and for each subscriber whose keywords hold OLD")
    c.add_argument("--trending", action="store_true",
                   help="rank by community signal (upvotes, comments) instead of queries: what a "
                        "subscriber without keywords gets")
    c.add_argument("--json", action="store_true", help="print JSON: [{id, title, score, reasons, why}]")
    c.set_defaults(run=cmd_match)

    c = sub.add_parser("preview", help="write each subscriber's next issue as local files",
                       description="Render the issue every (or one) subscriber would get now into "
                                   "DIR/index.html plus .html/.txt/.eml files. Sends and records nothing.")
    c.add_argument("--subscriber", metavar="EMAIL")
    c.add_argument("--out", type=Path, default=Path("preview"), help="output folder (default: preview)")
    c.add_argument("--at", type=_when, help="preview the issue due at this time (default: now)")
    c.add_argument("--no-fetch", action="store_true", help="do not ingest the configured sources first")
    c.add_argument("--serve", action="store_true", help="serve the preview workbench on 127.0.0.1")
    c.add_argument("--port", type=int, default=8000, help="workbench port (default 8000; 0 picks one)")
    c.add_argument("--open", action="store_true", help="open the workbench in a browser")
    c.set_defaults(run=cmd_preview)

    c = sub.add_parser("send", help="build every due issue and deliver it",
                       description="Ingest the sources, build every issue that is due, commit it to the "
                                   "ledger and deliver it over SMTP (or into a Maildir with --outbox).")
    c.add_argument("--subscriber", metavar="EMAIL")
    c.add_argument("--at", type=_when, help="act as if it were this time (default: now)")
    c.add_argument("--dry-run", action="store_true", help="only list what would be sent")
    c.add_argument("--outbox", type=Path, metavar="DIR", help="deliver into this Maildir instead of SMTP")
    c.add_argument("--build-workers", type=int, metavar="N", help="build batches in N processes (default: one "
                   "per core from 5,000 subscribers on, else in a thread; 0: always a thread)")
    c.add_argument("--no-fetch", action="store_true", help="do not ingest the configured sources first")
    c.set_defaults(run=cmd_send)

    from newsletter.cli_subscribers import add_parser as add_subscribers_parser

    add_subscribers_parser(sub, _Parser, cmd_validate)
    from newsletter.cli_db import add_parser as add_db_parser
    add_db_parser(sub, p)
    from newsletter.cli_readers import add_parser as add_readers_parser
    add_readers_parser(sub)
    from newsletter.cli_explain import add_parser as add_explain_parser
    add_explain_parser(sub)

    c = sub.add_parser("run", help="the long-lived service: fetch, build and send on schedule",
                       description="Run the scheduler: sources on their schedule, each group of subscribers "
                                   "at its cron time in its time zone, and the unsubscribe endpoint.")
    c.add_argument("--once", action="store_true", help="one pass of whatever is due, then exit (for cron)")
    c.add_argument("--host", default="127.0.0.1", help="unsubscribe endpoint address (default 127.0.0.1)")
    c.add_argument("--port", type=int, default=8025, help="unsubscribe endpoint port (default 8025)")
    c.add_argument("--catch-up", type=float, default=6.0, metavar="HOURS",
                   help="after downtime, send a missed slot if it is at most this old (default 6)")
    c.set_defaults(run=cmd_run)

    c = sub.add_parser("serve", help="serve only the one-click unsubscribe endpoint",
                       description="Serve POST/GET /unsubscribe/<token> (RFC 8058).")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    c.set_defaults(run=cmd_serve)

    c = sub.add_parser("status", help="per subscriber: last issue and result; per source: last fetch",
                       description="Show the delivery ledger and source health.")
    c.add_argument("--json", action="store_true")
    c.add_argument("--at", type=_when, help="compute next slots from this time (default: now)")
    c.set_defaults(run=cmd_status)
    return p


# --- shared -------------------------------------------------------------------------------------

def _now(args: argparse.Namespace) -> datetime:
    return getattr(args, "at", None) or datetime.now(timezone.utc)


def _config(args: argparse.Namespace) -> Config:
    """The configuration, loaded once per command."""
    loaded: Config | None = getattr(args, "loaded_config", None)
    if loaded is None:
        loaded = args.loaded_config = load(args.file, os.environ)
    return loaded


def _deployment(args: argparse.Namespace) -> Deployment:
    """The configuration, the state and the secrets, read once."""
    dep = Deployment.open(args.file, args.state, os.environ)
    if not args.quiet and args.command in ("send", "run"):  # `validate` prints them itself
        for warning in dep.warnings():
            print(warning, file=sys.stderr)
    return dep


def _state_path(args: argparse.Namespace) -> Location:
    """`--state`, else `newsletter.state:` in the file, else .newsletter/state.sqlite3 beside it."""
    if args.state:
        return args.state  # type: ignore[no-any-return]
    return resolve_state(args.file, None, _config(args).settings.state if args.file.exists() else None)


def _say(args: argparse.Namespace, text: str) -> None:
    say(args.quiet, text)


def _report_ingest(args: argparse.Namespace, reports: Sequence[ingest.IngestReport]) -> None:
    for r in reports:
        if not args.quiet:
            for reason in r.skipped:
                print(f"warning: {reason}", file=sys.stderr)
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
        elif r.not_modified:
            _say(args, f"{r.source}: not modified since the last fetch")
        else:
            _say(args, f"{r.source}: {r.new} new, {r.updated} updated, {r.unchanged} unchanged")


# --- commands -------------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    held = dep.validate()
    for warning in dep.warnings():
        print(warning)
    where = f", {held} in the state store" if held else ""
    _say(args, f"{args.file}: ok ({len(dep.config.subscribers)} subscribers{where}, "
               f"{len(dep.config.settings.sources)} sources)")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from newsletter import ingest

    now = datetime.now(timezone.utc)
    with _open_store(args) as store:
        if args.paths:
            reports = ingest.ingest_paths(store, args.paths, args.format, now)
        else:
            reports = ingest.ingest_sources(store, _config(args), now)
    _report_ingest(args, reports)
    return 1 if any(r.error for r in reports) else 0


def _open_store(args: argparse.Namespace) -> Store:
    return Store(_state_path(args))


def _read_store(args: argparse.Namespace) -> Store:
    return read_state(_state_path(args), args.state is not None)


def cmd_entries(args: argparse.Namespace) -> int:
    with _read_store(args) as store:
        entries = store.entries(since=args.since)
    if args.json:
        print(json.dumps([to_json(e) for e in entries], ensure_ascii=False, indent=1))
        return 0
    for e in entries:
        date = e.published.isoformat() if e.published else "          "
        votes = f"▲{e.upvotes}" if e.upvotes is not None else ""
        print(f"{e.id:<20} {date} {votes:>5}  {e.title}")
    _say(args, f"{len(entries)} entries")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from newsletter import trending
    from newsletter.matching import EntryIndex, Profile

    if args.diff:
        if len(args.queries) != 2 or args.subscriber or args.exclude or args.trending:
            raise ConfigError("--diff takes two queries, OLD and NEW: newsletter match --diff 'OLD' 'NEW'")
        since = args.since or datetime.now(timezone.utc) - timedelta(days=replay.WINDOW_DAYS)
        replays = _deployment(args).replay_queries(args.queries[0], args.queries[1], since)
        if args.json:
            print(json.dumps([{"subscriber": r.who or None,
                               "added": [{"id": m.entry.id, "title": m.entry.title, "issue": m.issue} for m in r.added],
                               "removed": [{"id": m.entry.id, "title": m.entry.title, "issue": m.issue}
                                           for m in r.removed]} for r in replays], ensure_ascii=False, indent=1))
        else:
            for r in replays:
                print("\n".join(r.lines()))
        return 0

    keywords, exclude = list(args.queries), list(args.exclude)
    min_upvotes = 0
    by_signal = args.trending
    if args.subscriber:
        config = _config(args)
        with _read_store(args) as store:  # a subscriber of the file or of the store
            sub = Roster(config, store).find(args.subscriber)
        if sub is None:
            raise ConfigError(f"no subscriber '{args.subscriber}' in {args.file} or the state store")
        keywords += list(sub.keywords)
        exclude += list(sub.exclude)
        min_upvotes = sub.min_upvotes
        by_signal = by_signal or sub.trending_only
    if by_signal and keywords:
        raise ConfigError("--trending ranks by community signal: give no QUERY (a subscriber with keywords "
                          "gets trending papers only in their `trending: N` section)")
    if not keywords and not by_signal:
        raise ConfigError("give at least one QUERY, --trending or --subscriber EMAIL")
    try:
        profile = Profile.from_strings(keywords, exclude, min_upvotes)
    except QuerySyntaxError as exc:
        raise ConfigError(f"query: {exc}") from exc
    with _read_store(args) as store:
        entries = store.entries(since=args.since)
    if by_signal:
        period = trending.period_of(args.since, _now(args)) if args.since else "of the stored papers"
        matches = trending.top(entries, args.limit, period=period, min_upvotes=min_upvotes, exclude=profile.exclude)
    else:
        matches = EntryIndex(entries).select(profile, limit=args.limit)
    if args.json:
        print(json.dumps([{
            "id": m.entry.id, "title": m.entry.title, "score": m.score,
            "upvotes": m.entry.upvotes, "url": m.entry.url,
            "reasons": [{"query": h.query, "term": h.term, "field": h.field} for h in m.hits],
            "why": m.why,
        } for m in matches], ensure_ascii=False, indent=1))
        return 0
    print_matches(matches, len(entries))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    if args.serve:
        return _serve_workbench(args)
    rows, ingested = _deployment(args).preview(_now(args), args.out, fetch=not args.no_fetch,
                                               only=args.subscriber)
    _report_ingest(args, ingested)
    for r in rows:
        if r.subject and r.size is not None:
            _say(args, f"{r.email}: {r.entries} entries, {r.size / 1024:.1f} KB — {r.subject}")
        else:
            _say(args, f"{r.email}: nothing to send ({r.reason})")
    _say(args, f"wrote {args.out / 'index.html'}")
    return 0


def _serve_workbench(args: argparse.Namespace) -> int:
    import asyncio

    from newsletter.workbench import Workbench, serve

    _config(args)  # a broken file is reported now, not as a blank page
    bench = Workbench(args.file, _state_path(args), dict(os.environ), at=args.at, fetch=not args.no_fetch)

    def ready(url: str) -> None:
        print(f"preview workbench on {url} (Ctrl-C to stop; the address holds this run's key)", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(url)

    asyncio.run(serve(bench, args.port, ready))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    now = _now(args)
    if args.dry_run:
        dry = dep.dry_run(now, fetch=not args.no_fetch, only=args.subscriber)
        _report_ingest(args, dry.ingested)
        for p in dry.built:
            what = f"would send {len(p.issue.matches)} entries" if p.sends else f"nothing to send ({p.reason})"
            print(f"{p.subscriber.email}: {what}")
        for s in dry.not_due:
            print(f"{s.subscriber.email}: not due ({s.reason})")
        for row in dry.pending:
            print(f"{row.subscriber}: pending from {row.slot:%Y-%m-%d %H:%M} UTC, "
                  f"{row.attempts} attempts, last error: {row.last_error or '-'}")
        return 0
    with _progress(args) as progress:
        result = dep.send(now, fetch=not args.no_fetch, only=args.subscriber, outbox=args.outbox,
                          progress=progress, workers=args.build_workers)
    _report_ingest(args, result.ingested)
    report = result.report
    for email, reason in report.empty:
        _say(args, f"{email}: nothing sent ({reason})")
    for email, reason in report.retrying:
        print(f"{email}: will retry: {reason}", file=sys.stderr)
    for email, reason in report.expired:
        print(f"{email}: expired: {reason}", file=sys.stderr)
    for email, reason in report.failed:
        print(f"{email}: failed: {reason}", file=sys.stderr)
    if report.stopped:
        print(f"error: {report.stopped}", file=sys.stderr)
    _say(args, f"sent {len(report.sent)}, retrying {len(report.retrying)}, failed {len(report.failed)}, "
               f"nothing to send {len(report.empty)}")
    if args.verbose:
        print("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.stages.items()), file=sys.stderr)
    if report.failed or report.retrying or report.stopped or report.expired:
        raise PartialDeliveryError(f"{len(report.failed) + len(report.retrying) + len(report.expired)} "
                                   "deliveries did not go through (listed above); see `newsletter status`")
    return 0


def _logging(args: argparse.Namespace) -> None:
    import logging

    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(logging.WARNING if not args.verbose else logging.INFO)
    for noisy in ("httpx", "httpcore"):  # at INFO they log every request URL, credentials included
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.INFO)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import timedelta

    from newsletter.scheduler import Service

    _logging(args)
    service = Service(args.file, args.state, os.environ, host=args.host, port=args.port,
                      catch_up=timedelta(hours=args.catch_up))
    asyncio.run(service.run(once=args.once))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from newsletter.scheduler import serve

    _logging(args)
    asyncio.run(serve(args.file, args.state, os.environ, args.host, args.port))
    return 0


@contextmanager
def _progress(args: argparse.Namespace) -> Iterator[Callable[[object], None] | None]:
    """A progress bar on a terminal, one log line per message otherwise (with --verbose)."""
    if args.quiet:
        yield None
        return
    if not sys.stderr.isatty():
        if args.verbose > 1:
            yield lambda o: print(f"{o.recipient}: {'sent' if o.ok else o.text}", file=sys.stderr)  # type: ignore[attr-defined]
        else:
            yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(), transient=True) as bar:
        task = bar.add_task("send", total=None)

        def advance(outcome: object) -> None:
            bar.advance(task)

        yield advance


def cmd_status(args: argparse.Namespace) -> int:
    from newsletter import status

    config = _config(args)
    with _read_store(args) as store:
        info = status.collect(config, store, _now(args))
    if args.json:
        print(json.dumps(info, indent=1, ensure_ascii=False))
    else:
        print(status.as_text(info))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except NewsletterError as exc:
        if args.debug:
            raise
        message = str(exc)
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            print("\n".join(exc.problems), file=sys.stderr)
            print(f"error: {len(exc.problems)} problems in {args.file}", file=sys.stderr)
        else:
            print(message if message.startswith(str(args.file)) else f"error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
