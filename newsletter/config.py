"""subscribers.yaml -> Config. Every problem is collected in one pass as FILE:LINE:COL: message.

PyYAML's composer keeps a start mark on every node; validation walks the node tree, so a message
can point at the exact key or value. Nothing is constructed from tags: no YAML executes anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from newsletter.addresses import check_address, check_sender
from newsletter.errors import ConfigError, QuerySyntaxError
from newsletter.models import Config, DkimConfig, Settings, SmtpConfig, SourceConfig, Subscriber
from newsletter.query import parse
from newsletter.schedule import Schedule, check_timezone

SOURCE_TYPES = ("hf-listing", "hf-daily", "arxiv", "feed", "file")
TLS_MODES = ("starttls", "tls", "none")
_TOP_KEYS = ("newsletter", "subscribers")
_SETTINGS_KEYS = ("title", "sender", "base_url", "sources", "schedule", "timezone", "max_entries",
                  "send_empty", "min_upvotes", "smtp", "templates", "unsubscribe_mailto", "language", "dkim")
_DKIM_KEYS = ("domain", "selector")
_SOURCE_KEYS = ("name", "type", "url", "path", "schedule", "timeout", "max_bytes")
_SMTP_KEYS = ("host", "port", "tls", "username", "timeout", "concurrency", "rate_limit", "retries",
              "ca_file", "max_per_connection", "pause_after")
_SUBSCRIBER_KEYS = ("email", "name", "keywords", "exclude", "schedule", "timezone", "max_entries",
                    "min_upvotes", "send_empty", "paused", "unsubscribed")
_TAG = "tag:yaml.org,2002:"


class _Checker:
    """Collects problems with positions while reading values out of YAML nodes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[tuple[int, int, str]] = []
        self.warnings: list[str] = []

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def error(self, node: yaml.Node, message: str) -> None:
        self.problems.append((node.start_mark.line, node.start_mark.column, message))

    def warn(self, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{self.where(node)}: warning: {message}")

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what}: expected a mapping of keys, got {_kind(node)}")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"{what}: keys must be plain names")
                continue
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.error(key_node, f"{what}: unknown key '{key}'{suggestion}")
                continue
            if key in out:
                self.error(key_node, f"{what}: key '{key}' appears twice")
                continue
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, what: str, kinds: tuple[str, ...]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{what}: expected {' or '.join(kinds)}, got {_kind(node)}")
            return None
        tag = node.tag.removeprefix(_TAG)
        if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
            tag = "str"
        if tag not in kinds:
            if "str" in kinds and tag in ("int", "float"):
                return node.value  # `name: 2024` is a fine name
            self.error(node, f"{what}: expected {' or '.join(kinds)}, got {tag} '{node.value}'")
            return None
        if tag == "int":
            return int(node.value.replace("_", ""), 0)
        if tag == "float":
            return float(node.value)
        if tag == "bool":
            return node.value.lower() in ("true", "yes", "on", "y")
        if tag == "null":
            return None
        return node.value

    def string(self, node: yaml.Node, what: str) -> str | None:
        value = self.scalar(node, what, ("str",))
        return None if value is None else str(value)

    def strings(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what}: expected a list of strings, got {_kind(node)}")
            return []
        out = []
        for i, item in enumerate(node.value):
            value = self.string(item, f"{what}[{i}]")
            if value is not None:
                out.append((value, item))
        return out

    def positive_int(self, node: yaml.Node, what: str, minimum: int = 1) -> int | None:
        value = self.scalar(node, what, ("int",))
        if value is not None and value < minimum:
            self.error(node, f"{what}: must be at least {minimum}, got {value}")
            return None
        return value

    def checked(self, node: yaml.Node, what: str, check: Callable[[str], Any]) -> Any:
        value = self.string(node, what)
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    def query(self, node: yaml.Node, what: str, text: str) -> None:
        try:
            q = parse(text)
        except QuerySyntaxError as exc:
            line, col = node.start_mark.line, node.start_mark.column
            if isinstance(node, yaml.ScalarNode) and node.end_mark.line == line and "\\" not in node.value:
                col += (1 if node.style in ("'", '"') else 0) + exc.column - 1  # point at the character
            self.problems.append((line, col, f"{what}: {exc}"))
            return
        for warning in q.warnings():
            self.warn(node, f"{what}: '{text}' {warning}")

    def raise_if_any(self) -> None:
        if self.problems:
            lines = tuple(f"{self.path}:{line + 1}:{col + 1}: {msg}" if line >= 0 else f"error in environment: {msg}"
                          for line, col, msg in sorted(self.problems))
            raise ConfigError("\n".join(lines), lines)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.tag.removeprefix(_TAG)} '{node.value}'"


def _zone(value: str) -> str:
    check_timezone(value)
    return value


def _cron(zone: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        Schedule(value, zone).check()
        return value
    return check


def _url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value.rstrip("/")


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a subscribers file; raises ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (create it from subscribers.example.yaml or pass --file PATH)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return loads(text, path, env or {})


def loads(text: str, path: Path, env: Mapping[str, str]) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty (it needs 'newsletter:' and 'subscribers:')")
    c = _Checker(path)
    top = c.mapping(root, "top level", _TOP_KEYS)
    if root is not None and isinstance(root, yaml.MappingNode) and "newsletter" not in top:
        c.error(root, "top level: missing 'newsletter:' settings block")
    settings = _settings(c, top.get("newsletter"), path.parent, env)
    subscribers = _subscribers(c, top.get("subscribers"), settings)
    c.raise_if_any()
    assert settings is not None
    return Config(path, settings, tuple(subscribers), tuple(c.warnings))


def _settings(c: _Checker, node: yaml.Node | None, base: Path, env: Mapping[str, str]) -> Settings | None:
    if node is None:
        return None
    m = c.mapping(node, "newsletter", _SETTINGS_KEYS)
    title = c.string(m["title"], "newsletter.title") if "title" in m else "Daily Papers Digest"
    sender = None
    if "sender" in m:
        sender = c.checked(m["sender"], "newsletter.sender", check_sender)
    else:
        c.error(node, "newsletter: missing 'sender' (e.g. \"Daily Papers <digest@example.org>\")")
    base_url = c.checked(m["base_url"], "newsletter.base_url", _url) if "base_url" in m else None
    tz_name = "UTC"
    if "timezone" in m:
        tz_name = c.checked(m["timezone"], "newsletter.timezone", _zone) or "UTC"
    schedule = "0 7 * * *"
    if "schedule" in m:
        schedule = c.checked(m["schedule"], "newsletter.schedule",
                             _cron(tz_name)) or schedule
    max_entries = c.positive_int(m["max_entries"], "newsletter.max_entries") if "max_entries" in m else 10
    min_upvotes = (c.positive_int(m["min_upvotes"], "newsletter.min_upvotes", 0)
                   if "min_upvotes" in m else 0)
    send_empty = c.scalar(m["send_empty"], "newsletter.send_empty", ("bool",)) if "send_empty" in m else False
    templates = None
    if "templates" in m:
        value = c.string(m["templates"], "newsletter.templates")
        if value:
            templates = (base / value).resolve()
            if not templates.is_dir():
                c.error(m["templates"], f"newsletter.templates: '{value}' is not a folder")
    mailto = None
    if "unsubscribe_mailto" in m:
        mailto = c.checked(m["unsubscribe_mailto"], "newsletter.unsubscribe_mailto", check_address)
    language = c.string(m["language"], "newsletter.language") if "language" in m else "en"
    dkim = None
    if "dkim" in m:
        d = c.mapping(m["dkim"], "newsletter.dkim", _DKIM_KEYS)
        for key in _DKIM_KEYS:
            if key not in d and d:
                c.error(m["dkim"], f"newsletter.dkim: missing '{key}'")
        if all(k in d for k in _DKIM_KEYS):
            domain = c.string(d["domain"], "newsletter.dkim.domain")
            selector = c.string(d["selector"], "newsletter.dkim.selector")
            if domain and selector:
                dkim = DkimConfig(domain, selector)
    sources = _sources(c, m.get("sources"), base)
    smtp = _smtp(c, m.get("smtp"), env)
    return Settings(
        title=title or "Daily Papers Digest", sender=sender or "", base_url=base_url,
        sources=tuple(sources), schedule=schedule, timezone=tz_name,
        max_entries=max_entries or 10, send_empty=bool(send_empty), min_upvotes=min_upvotes or 0,
        smtp=smtp, templates=templates, unsubscribe_mailto=mailto, language=language or "en", dkim=dkim,
    )


def _items(c: _Checker, node: yaml.Node | None, what: str) -> list[yaml.Node]:
    """The items of a list node; absent or null is an empty list, anything else an error."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null"):
        return []
    if not isinstance(node, yaml.SequenceNode):
        c.error(node, f"{what}: expected a list, got {_kind(node)}")
        return []
    return list(node.value)


def _sources(c: _Checker, node: yaml.Node | None, base: Path) -> list[SourceConfig]:
    out: list[SourceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(_items(c, node, "newsletter.sources")):
        what = f"newsletter.sources[{i}]"
        m = c.mapping(item, what, _SOURCE_KEYS)
        if not m:
            continue
        name = c.string(m["name"], f"{what}.name") if "name" in m else None
        if "name" not in m:
            c.error(item, f"{what}: missing 'name'")
        elif name in seen:
            c.error(m["name"], f"{what}.name: source '{name}' is defined twice")
        seen.add(name or "")
        kind = None
        if "type" not in m:
            c.error(item, f"{what}: missing 'type' (one of {', '.join(SOURCE_TYPES)})")
        else:
            kind = c.string(m["type"], f"{what}.type")
            if kind is not None and kind not in SOURCE_TYPES:
                hint = difflib.get_close_matches(kind, SOURCE_TYPES, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (one of {', '.join(SOURCE_TYPES)})"
                c.error(m["type"], f"{what}.type: unknown source type '{kind}'{extra}")
                kind = None
        url = c.checked(m["url"], f"{what}.url", _url) if "url" in m else None
        path = None
        if "path" in m:
            value = c.string(m["path"], f"{what}.path")
            path = (base / value) if value else None
        if ("url" in m) == ("path" in m):
            c.error(item, f"{what}: give exactly one of 'url' or 'path'")
        options: dict[str, Any] = {}
        if "schedule" in m:
            options["schedule"] = c.checked(m["schedule"], f"{what}.schedule",
                                          _cron("UTC"))
        if "timeout" in m:
            options["timeout"] = c.scalar(m["timeout"], f"{what}.timeout", ("int", "float"))
        if "max_bytes" in m:
            options["max_bytes"] = c.positive_int(m["max_bytes"], f"{what}.max_bytes")
        options = {k: v for k, v in options.items() if v is not None}
        if name and kind and (url or path):
            out.append(SourceConfig(name, kind, url, path, **options))
    return out


def _smtp(c: _Checker, node: yaml.Node | None, env: Mapping[str, str]) -> SmtpConfig:
    values: dict[str, Any] = {}
    if node is not None:
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.value == "password":
                    c.error(key_node, "newsletter.smtp.password: secrets never live in YAML; "
                                      "set NEWSLETTER_SMTP_PASSWORD in the environment")
            node.value = [kv for kv in node.value if kv[0].value != "password"]
        m = c.mapping(node, "newsletter.smtp", _SMTP_KEYS)
        for key in ("host", "username"):
            if key in m:
                values[key] = c.string(m[key], f"newsletter.smtp.{key}")
        if "port" in m:
            values["port"] = c.positive_int(m["port"], "newsletter.smtp.port")
        if "tls" in m:
            values["tls"] = c.checked(m["tls"], "newsletter.smtp.tls", _tls_mode)
        if "timeout" in m:
            values["timeout"] = c.scalar(m["timeout"], "newsletter.smtp.timeout", ("int", "float"))
        if "concurrency" in m:
            values["concurrency"] = c.positive_int(m["concurrency"], "newsletter.smtp.concurrency")
        if "max_per_connection" in m:
            values["max_per_connection"] = c.positive_int(m["max_per_connection"], "newsletter.smtp.max_per_connection")
        if "pause_after" in m:
            values["pause_after"] = c.positive_int(m["pause_after"], "newsletter.smtp.pause_after")
        if "retries" in m:
            values["retries"] = c.positive_int(m["retries"], "newsletter.smtp.retries", 0)
        if "ca_file" in m:
            values["ca_file"] = c.string(m["ca_file"], "newsletter.smtp.ca_file")
        if "rate_limit" in m:
            values["rate_limit"] = c.scalar(m["rate_limit"], "newsletter.smtp.rate_limit", ("int", "float"))
    values = {k: v for k, v in values.items() if v is not None}
    for key in ("host", "port", "username", "tls", "password"):
        raw = env.get(f"NEWSLETTER_SMTP_{key.upper()}")
        if raw is None or raw == "":
            continue
        try:
            values[key] = int(raw) if key == "port" else _tls_mode(raw) if key == "tls" else raw
        except ValueError as exc:
            c.problems.append((-1, -1, f"NEWSLETTER_SMTP_{key.upper()}: {exc}"))
    return SmtpConfig(**values)


def _tls_mode(value: str) -> str:
    if value not in TLS_MODES:
        raise ValueError(f"'{value}' is not one of {', '.join(TLS_MODES)}")
    return value


def _subscribers(c: _Checker, node: yaml.Node | None, settings: Settings | None) -> list[Subscriber]:
    out: list[Subscriber] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(_items(c, node, "subscribers")):
        what = f"subscribers[{i}]"
        m = c.mapping(item, what, _SUBSCRIBER_KEYS)
        if not m:
            continue
        email = None
        if "email" not in m:
            c.error(item, f"{what}: missing 'email'")
        else:
            email = c.checked(m["email"], f"{what}.email", check_address)
            if email is not None:
                if email in seen:
                    c.error(m["email"], f"{what}.email: duplicate subscriber '{email}' "
                                        f"(already subscribers[{seen[email]}])")
                    email = None
                else:
                    seen[email] = i
        what = f"{what} ({email})" if email else what
        keywords = c.strings(m["keywords"], f"{what}.keywords") if "keywords" in m else []
        if "keywords" not in m:
            c.error(item, f"{what}: missing 'keywords' (a list of queries)")
        elif not keywords and isinstance(m["keywords"], yaml.SequenceNode):
            c.error(m["keywords"], f"{what}.keywords: needs at least one query")
        for j, (text, knode) in enumerate(keywords):
            c.query(knode, f"{what}.keywords[{j}]", text)
        exclude = c.strings(m["exclude"], f"{what}.exclude") if "exclude" in m else []
        for j, (text, knode) in enumerate(exclude):
            c.query(knode, f"{what}.exclude[{j}]", text)
        tz_name = settings.timezone if settings else "UTC"
        if "timezone" in m:
            tz_name = c.checked(m["timezone"], f"{what}.timezone",
                                _zone) or tz_name
        schedule = settings.schedule if settings else "0 7 * * *"
        if "schedule" in m:
            schedule = c.checked(m["schedule"], f"{what}.schedule",
                                 _cron(tz_name)) or schedule
        max_entries = (c.positive_int(m["max_entries"], f"{what}.max_entries")
                       if "max_entries" in m else None)
        min_upvotes = (c.positive_int(m["min_upvotes"], f"{what}.min_upvotes", 0)
                       if "min_upvotes" in m else None)
        send_empty = c.scalar(m["send_empty"], f"{what}.send_empty", ("bool",)) if "send_empty" in m else None
        paused = c.scalar(m["paused"], f"{what}.paused", ("bool",)) if "paused" in m else False
        unsubscribed = (c.scalar(m["unsubscribed"], f"{what}.unsubscribed", ("bool",))
                        if "unsubscribed" in m else False)
        name = c.string(m["name"], f"{what}.name") if "name" in m else None
        if email and settings:
            out.append(Subscriber(
                email=email, name=name, keywords=tuple(t for t, _ in keywords),
                exclude=tuple(t for t, _ in exclude), schedule=schedule, timezone=tz_name,
                max_entries=max_entries or settings.max_entries,
                min_upvotes=settings.min_upvotes if min_upvotes is None else min_upvotes,
                send_empty=settings.send_empty if send_empty is None else bool(send_empty),
                paused=bool(paused), unsubscribed=bool(unsubscribed),
            ))
    return out
