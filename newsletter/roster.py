"""Where subscribers live: subscribers.yaml (a hand-kept list) and the store (imported lists, readers
who sign up). A subscriber is defined in exactly one place; the same address in both is an error.

The roster walks both kinds in batches with their standing (newsletter/standing.py), reading the
store a page at a time, so memory does not grow with the number of store-held subscribers.
`import_file` / `export` move lists in and out (CSV with a header row, JSON Lines, or YAML in the
`subscribers:` schema), validated with exactly the rules of `newsletter validate`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from newsletter.addresses import normalise_address
from newsletter.config import loads
from newsletter.errors import ConfigError
from newsletter.models import Config, Subscriber
from newsletter.standing import Standing, standing
from newsletter.store import Store

PAGE = 1000
FORMATS = ("csv", "jsonl", "yaml")
FIELDS = ("email", "name", "keywords", "exclude", "schedule", "timezone", "max_entries", "min_upvotes",
          "send_empty")


@dataclass(frozen=True)
class Member:
    subscriber: Subscriber
    standing: Standing


class Roster:
    """Every subscriber of one configuration and one store."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    def conflicts(self) -> list[str]:
        """Problems: addresses defined both in the file and in the store."""
        both = self.store.known([s.email for s in self.config.subscribers])
        return [f"{self.config.path}: subscriber '{e}' is defined both in this file and in the state store "
                f"({self.store.path}); remove one (`newsletter subscribers remove {e}` removes it from the "
                f"file when only the file has it, or edit the file)" for e in sorted(both)]

    def find(self, email: str) -> Subscriber | None:
        email = normalise_address(email)
        return self.config.subscriber(email) or self.store.subscriber(email)

    def member(self, email: str) -> Member | None:
        sub = self.find(email)
        if sub is None:
            return None
        return Member(sub, standing(sub, self.store.states([sub.email]).get(sub.email)))

    def count(self) -> int:
        return len(self.config.subscribers) + self.store.subscriber_count()

    def schedules(self) -> set[tuple[str, str]]:
        """The distinct (cron, zone) pairs: one scheduler job each."""
        return {(s.schedule, s.timezone) for s in self.config.subscribers} | self.store.schedules()

    def batches(self, size: int = PAGE, *, only: Collection[str] | None = None,
                group: tuple[str, str] | None = None) -> Iterator[list[Member]]:
        """Members in batches of at most `size`: the file's first, then the store's, page by page.
        `only` restricts to these addresses; `group` to one (cron, zone)."""
        for subs in self.subscriber_batches(size, only=only, group=group):
            yield self.with_standing(subs)

    def subscriber_batches(self, size: int = PAGE, *, only: Collection[str] | None = None,
                           group: tuple[str, str] | None = None,
                           share: tuple[int, int] | None = None) -> Iterator[list[Subscriber]]:
        """The subscribers of `batches`, without reading their state. `share` (k, n): only
        every n-th batch from the k-th; the others are stepped over without being read where that
        keeps the numbering (no filter: every page is a batch)."""
        wanted = {normalise_address(e) for e in only} if only is not None else None

        def keep(s: Subscriber) -> bool:
            return (wanted is None or s.email in wanted) and (group is None or (s.schedule, s.timezone) == group)

        def mine(i: int) -> bool:
            return share is None or i % share[1] == share[0]

        file_subs = [s for s in self.config.subscribers if keep(s)]
        n = 0
        for i in range(0, len(file_subs), size):
            if mine(n):
                yield file_subs[i:i + size]
            n += 1
        if wanted is not None and len(wanted) <= size:
            found = [s for s in (self.store.subscriber(e) for e in sorted(wanted)) if s is not None and keep(s)]
            if found and mine(n):
                yield found
            return
        after: str | None = ""
        while after is not None:
            if not mine(n) and wanted is None and group is None:
                after = self.store.last_of_page(after, size)
                n += 1
                continue
            page = self.store.subscribers_page(after, size)
            if not page:
                return
            after = page[-1].email
            chosen = [s for s in page if keep(s)]
            if chosen:
                if mine(n):
                    yield chosen
                n += 1

    def with_standing(self, subs: Sequence[Subscriber]) -> list[Member]:
        """Each subscriber with their standing (one read of the state for all)."""
        states = self.store.states([s.email for s in subs])
        return [Member(s, standing(s, states.get(s.email))) for s in subs]


# --- import / export ------------------------------------------------------------------------------

def _detect(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ConfigError(f"{path}: cannot tell the format from the name; pass --format csv|jsonl|yaml")


def _split(cell: str) -> list[str]:
    return [q.strip() for q in cell.split(";") if q.strip()]


def _rows_csv(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "email" not in reader.fieldnames:
        raise ConfigError(f"{path}:1: the first row must name the columns, among them 'email' "
                          f"(known: {', '.join(FIELDS)})")
    unknown = [f for f in reader.fieldnames if f not in FIELDS]
    if unknown:
        raise ConfigError(f"{path}:1: unknown column(s) {', '.join(map(repr, unknown))} (known: {', '.join(FIELDS)})")
    out = []
    for row in reader:
        item: dict[str, Any] = {}
        for key, value in row.items():
            if value is None or value == "" or key is None:
                continue
            if key in ("keywords", "exclude"):
                item[key] = _split(value)
            elif key in ("max_entries", "min_upvotes") and value.strip().lstrip("-").isdigit():
                item[key] = int(value)
            elif key == "send_empty" and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                item[key] = value.lower() in ("true", "yes", "1")
            else:
                item[key] = value
        out.append((reader.line_num, item))
    return out


def _rows_jsonl(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of the same objects
        try:
            items = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
        return [(i + 1, item) for i, item in enumerate(items)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}:{n}: invalid JSON: {exc}") from None
    return out


_POSITION = re.compile(r"^(?P<path>.*?):(?P<line>\d+):(?P<col>\d+): ")


VALIDATE_CHUNK = 5_000  # rows validated as one generated document: memory stays bounded by it
_INDEX = re.compile(r"subscribers\[(\d+)\]")


def validate_rows(rows: list[tuple[int, dict[str, Any]]], path: Path, config: Config,
                  env: dict[str, str]) -> list[Subscriber]:
    """Validate imported rows with the rules of `validate` and the file's settings as defaults:
    each row becomes one line of a generated YAML document, so a problem maps back to its row.
    Rows are validated a chunk at a time (the parsed nodes of one chunk at most are held); every
    problem of every chunk is reported."""
    for n, item in rows:
        if not isinstance(item, dict):
            raise ConfigError(f"{path}:{n}: expected an object with 'email', 'keywords' ...")
    settings_raw = yaml.safe_load(config.path.read_text(encoding="utf-8")).get("newsletter")
    settings_line = f"newsletter: {json.dumps(settings_raw, ensure_ascii=False, default=str)}"
    out: list[Subscriber] = []
    problems: list[str] = []
    first: dict[str, int] = {}  # address -> its row, across chunks
    for start in range(0, len(rows), VALIDATE_CHUNK):
        chunk = rows[start:start + VALIDATE_CHUNK]
        try:
            parsed = _validate_chunk(chunk, path, settings_line, env)
        except ConfigError as exc:
            problems += [_INDEX.sub(lambda m: f"subscribers[{int(m[1]) + start}]", p) for p in exc.problems]
            continue
        for k, sub in enumerate(parsed):
            n = chunk[k][0]
            if sub.email in first:
                problems.append(f"{path}:{n}: subscribers[{start + k}].email: duplicate subscriber '{sub.email}' "
                                f"(already at row {first[sub.email]})")
            else:
                first[sub.email] = n
                out.append(sub)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else f"{path}: {len(problems)} problems",
                          tuple(problems))
    return out


def _validate_chunk(rows: list[tuple[int, dict[str, Any]]], path: Path, settings_line: str,
                    env: dict[str, str]) -> tuple[Subscriber, ...]:
    lines = ["subscribers:"] + [f"  - {json.dumps({k: v for k, v in item.items() if v is not None}, ensure_ascii=False)}"
                                for _, item in rows]
    lines.append(settings_line)
    try:
        return loads("\n".join(lines) + "\n", path, env).subscribers
    except ConfigError as exc:
        problems = []
        for p in exc.problems:
            m = _POSITION.match(p)
            if m and 2 <= int(m["line"]) <= len(rows) + 1:
                problems.append(f"{path}:{rows[int(m['line']) - 2][0]}: {p[m.end():]}")
            else:
                problems.append(p)
        raise ConfigError(problems[0], tuple(problems)) from None


def read_import(path: Path, config: Config, env: dict[str, str], fmt: str | None = None) -> list[Subscriber]:
    """Subscribers from a CSV, JSON Lines or YAML file, validated; raises ConfigError listing every problem."""
    fmt = _detect(path, fmt)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if fmt == "yaml":
        try:
            root = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if isinstance(root, dict) and "newsletter" in root:
            return list(loads(text, path, env).subscribers)  # a whole subscribers file: its own positions
        if isinstance(root, dict) and isinstance(root.get("subscribers"), list):
            return validate_rows([(i + 1, s) for i, s in enumerate(root["subscribers"])], path, config, env)
        raise ConfigError(f"{path}: expected a 'subscribers:' list (the schema of subscribers.yaml)")
    rows = _rows_csv(text, path) if fmt == "csv" else _rows_jsonl(text, path)
    return validate_rows(rows, path, config, env)


def import_subscribers(config: Config, store: Store, subscribers: Sequence[Subscriber], now: datetime,
                       *, replace: bool = False) -> int:
    """Store-held subscribers from now on. Refuses (changing nothing) an address the file defines,
    or, unless `replace`, one the store already holds."""
    in_file = [s.email for s in subscribers if config.subscriber(s.email) is not None]
    if in_file:
        raise ConfigError(f"{len(in_file)} imported subscriber(s) are defined in {config.path} already, e.g. "
                          f"{', '.join(in_file[:3])}; a subscriber lives in one place: remove them from the file "
                          "first (or leave them out of the import)")
    if not replace:
        held = store.known([s.email for s in subscribers])
        if held:
            raise ConfigError(f"{len(held)} imported subscriber(s) are in the store already, e.g. "
                              f"{', '.join(sorted(held)[:3])}; pass --replace to overwrite their profiles")
    return store.add_subscribers(subscribers, now, replace_existing=replace)


def as_dict(s: Subscriber) -> dict[str, Any]:
    """The subscriber as the `subscribers:` schema writes it (the optional keys only when set)."""
    out: dict[str, Any] = {
        "email": s.email, "name": s.name, "keywords": list(s.keywords), "exclude": list(s.exclude),
        "schedule": s.schedule, "timezone": s.timezone, "max_entries": s.max_entries,
        "min_upvotes": s.min_upvotes, "send_empty": s.send_empty}
    if s.trending:
        out["trending"] = s.trending
    if not s.updates:
        out["updates"] = False
    if s.must_include:
        out["must_include"] = list(s.must_include)
    if s.must_exclude:
        out["must_exclude"] = list(s.must_exclude)
    if s.near_misses:
        out["near_misses"] = True
    return out


def export(config: Config, store: Store, out: TextIO, fmt: str, *, include_file: bool = False) -> int:
    """Write the store-held subscribers (and the file's, with `include_file`), streaming."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(FIELDS)
    elif fmt == "yaml":
        out.write("subscribers:\n")
    n = 0
    for batch in Roster(config, store).batches():
        for m in batch:
            s = m.subscriber
            if s.home != "store" and not include_file:
                continue
            d = as_dict(s)
            if writer:
                writer.writerow([";".join(v) if isinstance(v, list) else "" if v is None else str(v).lower()
                                 if isinstance(v, bool) else v for v in d.values()])
            elif fmt == "jsonl":
                out.write(json.dumps(d, ensure_ascii=False) + "\n")
            else:
                out.write(f"  - {json.dumps({k: v for k, v in d.items() if v is not None}, ensure_ascii=False)}\n")
            n += 1
    return n
