"""subscribers.yaml -> Config: the schema. Every problem is collected in one pass as
FILE:LINE:COL: message (newsletter.nodecheck reads the values, newsletter.yamlnodes the text).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

import yaml

from newsletter.addresses import check_address, check_sender
from newsletter.errors import ConfigError
from newsletter.models import Config, DkimConfig, Settings, SmtpConfig, SourceConfig, Subscriber
from newsletter.nodecheck import NULL, Checker, kind
from newsletter.schedule import Schedule, check_timezone
from newsletter.store.base import URL_SCHEMES
from newsletter.matching import gc_paused
from newsletter.yamlnodes import compose, compose_value

SOURCE_TYPES = ("hf-listing", "hf-daily", "arxiv", "feed", "file")
TLS_MODES = ("starttls", "tls", "none")
_TOP_KEYS = ("newsletter", "subscribers")
_SETTINGS_KEYS = ("title", "sender", "base_url", "sources", "schedule", "timezone", "max_entries",
                  "send_empty", "min_upvotes", "smtp", "templates", "unsubscribe_mailto", "language", "dkim",
                  "subscribe", "subscribe_domains", "confirm_hours", "bounces", "state")
_DKIM_KEYS = ("domain", "selector")
_SOURCE_KEYS = ("name", "type", "url", "path", "schedule", "timeout", "max_bytes", "catch_up_days",
                "request_budget")
# Sources whose entries never carry a community signal (upvotes): nothing from them can trend.
_NO_SIGNAL = ("arxiv", "feed")
_SMTP_KEYS = ("host", "port", "tls", "username", "timeout", "concurrency", "rate_limit", "retries",
              "ca_file", "max_per_connection", "pause_after")
_SUBSCRIBER_KEYS = ("email", "name", "keywords", "exclude", "schedule", "timezone", "max_entries",
                    "min_upvotes", "send_empty", "paused", "unsubscribed", "trending", "updates", "must_include",
                    "must_exclude", "near_misses")
# With no base_url the only List-Unsubscribe is a mailto: (printed by validate; `send` may print it too).
NO_ONE_CLICK_WARNING = (
    "no base_url: messages carry only a mailto: List-Unsubscribe, which Gmail's and Yahoo's bulk-sender "
    "rules do not accept as one-click unsubscribe; set newsletter.base_url to the public address of "
    "`newsletter serve` (or `run`) and NEWSLETTER_SECRET in the environment"
)
UNSUBSCRIBED_IN_YAML_WARNING = (
    "subscriber state now lives in the state store (`newsletter subscribers unsubscribe` / `resume` "
    "manage it); this line is read only for files written by the old release"
)


def _zone(value: str) -> str:
    check_timezone(value)
    return value


def _cron(value: str, zone: str) -> str:
    Schedule(value, zone).check()
    return value


def _control_character(value: str) -> str | None:
    """The first control, line- or paragraph-separator character, as U+XXXX, or None."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"U+{ord(ch):04X}"
    return None


def _url(value: str) -> str:
    bad = _control_character(value)
    if bad:
        raise ValueError(f"a URL cannot contain line breaks or control characters (found {bad})")
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value.rstrip("/")


def _base_url(value: str) -> str:
    """Where the unsubscribe links start: it goes into every message's headers, so nothing odd in it."""
    url = _url(value)
    if " " in value or "\\" in value:
        raise ValueError(f"'{value}' contains a space or backslash; percent-encode it")
    parsed = urlparse(url)
    if parsed.query or parsed.fragment or "?" in value or "#" in value:
        raise ValueError(f"'{value}' has a query or fragment; give the address links start from, "
                         "such as https://digest.example.org")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError(f"'{value}' contains a user name or password; links are public")
    return url


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (create it from subscribers.example.yaml or pass --file PATH)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a subscribers file; raises ConfigError listing every problem."""
    return loads(_read(path), path, env or {})


def loads(text: str, path: Path, env: Mapping[str, str]) -> Config:
    # Paused, the collector does not walk the growing node tree again and again (half the time of a
    # 100,000-subscriber load). The tree is freed when _config returns, before the collector is back:
    # else its first pass would walk the millions of objects allocated meanwhile.
    with gc_paused():
        return _config(compose(text, path), path, env)


def _config(root: yaml.Node | None, path: Path, env: Mapping[str, str]) -> Config:
    if root is None:
        raise ConfigError(f"{path}: the file is empty (it needs 'newsletter:' and 'subscribers:')")
    c = Checker(path)
    top = c.mapping(root, "top level", _TOP_KEYS)
    if isinstance(root, yaml.MappingNode) and "newsletter" not in top:
        c.error(root, "top level: missing 'newsletter:' settings block")
    settings = _settings(c, top.get("newsletter"), path.parent, env)
    if settings is not None and settings.base_url is None:
        key = next(k for k, v in root.value if v is top["newsletter"])
        c.warn(key, f"newsletter: {NO_ONE_CLICK_WARNING}")
    subscribers = _subscribers(c, top.get("subscribers"), settings)
    c.raise_if_any()
    assert settings is not None
    return Config(path, settings, tuple(subscribers), tuple(c.warnings))


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Only the `newsletter:` block, validated as load() does; the file is read only up to the end
    of that block, and the subscribers are neither read nor checked (a broken subscriber entry, or
    broken YAML after the block, goes unnoticed). For hot paths (the unsubscribe endpoint, the
    scheduler's ticks) where a full load of a large list is too slow."""
    try:
        with path.open("rb") as stream, gc_paused():
            node = compose_value(stream, "newsletter")
    except OSError:
        node = None
    if node is None:  # unreadable, or an unusual layout: a full load says what is wrong
        return load(path, env).settings
    c = Checker(path)
    settings = _settings(c, node, path.parent, env or {})
    c.raise_if_any()
    assert settings is not None
    return settings


_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")


def _domain(value: Any) -> str:
    """A domain for subscribe_domains: `@Lab.Example.org` -> `lab.example.org`."""
    domain = str(value).strip().lstrip("@").lower().rstrip(".")
    try:
        ascii_form = domain.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_form = ""
    if not _DOMAIN.fullmatch(ascii_form):
        raise ValueError(f"'{value}' is not a domain name (e.g. lab.example.org)")
    return domain


def _settings(c: Checker, node: yaml.Node | None, base: Path, env: Mapping[str, str]) -> Settings | None:
    if node is None:
        return None
    m = c.mapping(node, "newsletter", _SETTINGS_KEYS)
    title = c.string(m["title"], "newsletter.title") if "title" in m else "Daily Papers Digest"
    sender = None
    if "sender" in m:
        sender = c.checked(m["sender"], "newsletter.sender", check_sender)
    else:
        c.error(node, "newsletter: missing 'sender' (e.g. \"Daily Papers <digest@example.org>\")")
    base_url = c.checked(m["base_url"], "newsletter.base_url", _base_url) if "base_url" in m else None
    tz_name = "UTC"
    if "timezone" in m:
        tz_name = c.checked(m["timezone"], "newsletter.timezone", _zone) or "UTC"
    schedule = "0 7 * * *"
    if "schedule" in m:
        schedule = c.checked(m["schedule"], "newsletter.schedule", _cron, tz_name) or schedule
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
    subscribe = c.scalar(m["subscribe"], "newsletter.subscribe", ("bool",)) if "subscribe" in m else True
    domains = tuple(d for d in (c.checked(node, f"newsletter.subscribe_domains[{i}]", _domain) for i, (_, node) in
                                enumerate(c.strings(m["subscribe_domains"], "newsletter.subscribe_domains")))
                    if d) if "subscribe_domains" in m else ()
    confirm_hours = (c.positive_int(m["confirm_hours"], "newsletter.confirm_hours", 1, 24 * 30)
                     if "confirm_hours" in m else 48)
    bounce_maildir = _bounces(c, m["bounces"], base) if "bounces" in m else None
    state = c.checked(m["state"], "newsletter.state", _state) if "state" in m else None
    sources = _sources(c, m.get("sources"), base)
    smtp = _smtp(c, m.get("smtp"), env)
    return Settings(
        title=title or "Daily Papers Digest", sender=sender or "", base_url=base_url,
        sources=tuple(sources), schedule=schedule, timezone=tz_name,
        max_entries=max_entries or 10, send_empty=bool(send_empty), min_upvotes=min_upvotes or 0,
        smtp=smtp, templates=templates, unsubscribe_mailto=mailto, language=language or "en", dkim=dkim,
        subscribe=subscribe is not False, subscribe_domains=domains, confirm_hours=confirm_hours or 48,
        bounce_maildir=bounce_maildir, state=state or None,
    )


def _paper_ids(c: Checker, node: yaml.Node, what: str) -> tuple[str, ...]:
    """Paper ids as written: `2611.00002` stays that text (YAML would read it as a number)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        c.error(node, f"{what}: expected a list of paper ids (e.g. [2611.00002, t:5119c8109ae6deb5]), got {kind(node)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(node.value):
        if not isinstance(item, yaml.ScalarNode) or item.tag == NULL or not str(item.value).strip():
            c.error(item, f"{what}[{i}]: expected a paper id (an arXiv id or an entry id), got {kind(item)}")
            continue
        out.append(str(item.value).strip())
    return tuple(dict.fromkeys(out))


def _state(value: str) -> str:
    """Where the state lives: a path, or a postgresql:// URL that holds no password (it comes from
    NEWSLETTER_DB_PASSWORD, PGPASSWORD or ~/.pgpass: never from a file that is shared and versioned)."""
    text = value.strip()
    if not text:
        raise ValueError("is empty (a path such as .newsletter/state.sqlite3, or a postgresql:// URL)")
    if "://" in text.split("?")[0] and not text.startswith(URL_SCHEMES):
        raise ValueError(f"'{text.split('://')[0]}://' is not a state this newsletter can use: a path, or a "
                         "postgresql:// URL")
    if text.startswith(URL_SCHEMES):
        try:
            parts = urlsplit(text)
            password = parts.password
        except ValueError as exc:
            raise ValueError(f"is not a valid URL ({exc})") from None
        if password is not None or "password" in {k.lower() for k in parse_qs(parts.query)}:
            raise ValueError("holds a password: keep it out of this file and set NEWSLETTER_DB_PASSWORD "
                             "(or PGPASSWORD, or ~/.pgpass) instead")
    return text


def _bounces(c: Checker, node: yaml.Node, base: Path) -> Path | None:
    """`bounces: {maildir: PATH}` (relative to the subscribers file): the Maildir `run` watches."""
    fields = c.mapping(node, "newsletter.bounces", ("maildir",))
    if "maildir" not in fields:
        c.error(node, "newsletter.bounces: missing 'maildir' (the Maildir that receives bounce reports)")
        return None
    value = c.string(fields["maildir"], "newsletter.bounces.maildir")
    if not value:
        return None
    path = (base / value).resolve()
    if path.exists() and not path.is_dir():
        c.error(node, f"newsletter.bounces.maildir: '{value}' is not a folder (a Maildir, with cur/ and new/)")
    return path


def _items(c: Checker, node: yaml.Node | None, what: str) -> list[yaml.Node]:
    """The items of a list node; absent or null is an empty list, anything else an error."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL):
        return []
    if not isinstance(node, yaml.SequenceNode):
        c.error(node, f"{what}: expected a list, got {kind(node)}")
        return []
    return list(node.value)


def _sources(c: Checker, node: yaml.Node | None, base: Path) -> list[SourceConfig]:
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
        elif name and name.startswith("~"):
            c.error(m["name"], f"{what}.name: a source name cannot start with '~' (the state store uses those)")
            name = None
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
            options["schedule"] = c.checked(m["schedule"], f"{what}.schedule", _cron, "UTC")
        if "timeout" in m:
            options["timeout"] = c.seconds(m["timeout"], f"{what}.timeout")
        if "max_bytes" in m:
            options["max_bytes"] = c.positive_int(m["max_bytes"], f"{what}.max_bytes")
        for key in ("catch_up_days", "request_budget"):
            if key in m:
                if not (kind == "hf-daily" and url and "{date}" in url):
                    c.error(m[key], f"{what}.{key}: only for an hf-daily source read by date "
                                    "(a url with {date}, e.g. https://huggingface.co/api/daily_papers?date={date})")
                options[key] = c.positive_int(m[key], f"{what}.{key}", 1, 31 if key == "catch_up_days" else None)
        options = {k: v for k, v in options.items() if v is not None}
        if name and kind and (url or path):
            out.append(SourceConfig(name, kind, url, path, **options))
    return out


def _smtp(c: Checker, node: yaml.Node | None, env: Mapping[str, str]) -> SmtpConfig:
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
            values["port"] = c.positive_int(m["port"], "newsletter.smtp.port", 1, 65535)
        if "tls" in m:
            values["tls"] = c.checked(m["tls"], "newsletter.smtp.tls", _tls_mode)
        if "timeout" in m:
            values["timeout"] = c.seconds(m["timeout"], "newsletter.smtp.timeout")
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
            rate = c.scalar(m["rate_limit"], "newsletter.smtp.rate_limit", ("int", "float"))
            if rate is not None and rate < 0:
                c.error(m["rate_limit"], f"newsletter.smtp.rate_limit: must be at least 0 messages a second "
                                         f"(0 = unlimited), got {rate}")
                rate = None
            values["rate_limit"] = rate
    values = {k: v for k, v in values.items() if v is not None}
    for key in ("host", "port", "username", "tls", "password"):
        raw = env.get(f"NEWSLETTER_SMTP_{key.upper()}")
        if raw is None or raw == "":
            continue
        try:
            values[key] = _port(raw) if key == "port" else _tls_mode(raw) if key == "tls" else raw
        except ValueError as exc:
            c.problems.append((-1, -1, f"NEWSLETTER_SMTP_{key.upper()}: {exc}"))
    return SmtpConfig(**values)


def _port(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ValueError(f"'{value}' is not a port number (1-65535)")
    return int(value)


def _tls_mode(value: str) -> str:
    if value not in TLS_MODES:
        raise ValueError(f"'{value}' is not one of {', '.join(TLS_MODES)}")
    return value


def _subscribers(c: Checker, node: yaml.Node | None, settings: Settings | None) -> list[Subscriber]:
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
            email = c.checked(m["email"], f"{what}.email", c.address, remember=False)
            if email is not None:
                if email in seen:
                    c.error(m["email"], f"{what}.email: duplicate subscriber '{email}' "
                                        f"(already subscribers[{seen[email]}])")
                    email = None
                else:
                    seen[email] = i
        what = f"{what} ({email})" if email else what
        # without keywords (missing, null or []) a subscriber receives the trending papers
        keywords = c.strings(m["keywords"], f"{what}.keywords") if "keywords" in m else []
        c.queries(keywords, f"{what}.keywords")
        trending = c.positive_int(m["trending"], f"{what}.trending", 0, 100) if "trending" in m else None
        if not keywords and trending:
            c.error(m["trending"], f"{what}.trending: this subscriber has no keywords, so every paper it gets is "
                                   "a trending one (max_entries of them); `trending: N` adds a section beside "
                                   "keyword matches: remove it, or add keywords")
        if not keywords and settings is not None and settings.sources and all(
                s.type in _NO_SIGNAL for s in settings.sources):
            names = ", ".join(f"'{s.name}' ({s.type})" for s in settings.sources)
            c.error(m.get("keywords", item), f"{what}: has no keywords, so it would receive trending papers, but "
                                             f"none of the sources ({names}) gives upvotes to rank them by: it "
                                             "could never receive anything; add keywords, or an hf-daily source")
        updates = c.scalar(m["updates"], f"{what}.updates", ("bool",)) if "updates" in m else True
        musts = {key: _paper_ids(c, m[key], f"{what}.{key}") if key in m else ()
                 for key in ("must_include", "must_exclude")}
        near = c.scalar(m["near_misses"], f"{what}.near_misses", ("bool",)) if "near_misses" in m else False
        exclude = c.strings(m["exclude"], f"{what}.exclude") if "exclude" in m else []
        c.queries(exclude, f"{what}.exclude")
        tz_name = settings.timezone if settings else "UTC"
        if "timezone" in m:
            tz_name = c.checked(m["timezone"], f"{what}.timezone", _zone) or tz_name
        schedule = settings.schedule if settings else "0 7 * * *"
        if "schedule" in m:
            schedule = c.checked(m["schedule"], f"{what}.schedule", _cron, tz_name) or schedule
        max_entries = (c.positive_int(m["max_entries"], f"{what}.max_entries")
                       if "max_entries" in m else None)
        min_upvotes = (c.positive_int(m["min_upvotes"], f"{what}.min_upvotes", 0)
                       if "min_upvotes" in m else None)
        send_empty = c.scalar(m["send_empty"], f"{what}.send_empty", ("bool",)) if "send_empty" in m else None
        paused = c.scalar(m["paused"], f"{what}.paused", ("bool",)) if "paused" in m else False
        unsubscribed = (c.scalar(m["unsubscribed"], f"{what}.unsubscribed", ("bool",))
                        if "unsubscribed" in m else False)
        if unsubscribed:
            c.warn(m["unsubscribed"], f"{what}.unsubscribed: {UNSUBSCRIBED_IN_YAML_WARNING}")
        name = c.string(m["name"], f"{what}.name") if "name" in m else None
        if email and settings:
            out.append(Subscriber(
                email=email, name=name, keywords=tuple(t for t, _ in keywords),
                exclude=tuple(t for t, _ in exclude), schedule=schedule, timezone=tz_name,
                max_entries=max_entries or settings.max_entries,
                min_upvotes=settings.min_upvotes if min_upvotes is None else min_upvotes,
                send_empty=settings.send_empty if send_empty is None else bool(send_empty),
                paused=bool(paused), unsubscribed=bool(unsubscribed), trending=trending or 0,
                updates=updates is not False, must_include=musts["must_include"], must_exclude=musts["must_exclude"],
                near_misses=near is True,
            ))
    return out
