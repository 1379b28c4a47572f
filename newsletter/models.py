"""Frozen dataclasses passed between stages: entries, settings, subscribers, matches, issues."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime
from pathlib import Path


@dataclass(frozen=True)
class Links:
    """Where a paper can be read; every value is an http(s) URL or None."""

    page: str | None = None
    arxiv: str | None = None
    pdf: str | None = None
    code: str | None = None
    project: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class Entry:
    """One paper, as parsed from a source or loaded from the store."""

    id: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    published: date | None = None
    upvotes: int | None = None
    comments: int | None = None
    organization: str | None = None
    links: Links = field(default_factory=Links)
    sources: tuple[str, ...] = ()
    first_seen: datetime | None = None
    updated: datetime | None = None
    new_version: bool = False  # this sighting announces a new arXiv version (not stored; ingest compares)

    @property
    def url(self) -> str | None:
        return self.links.page or self.links.arxiv or self.links.pdf


@dataclass(frozen=True)
class Parsed:
    """What a source parser gives: the usable entries, and each skipped item with the reason."""

    entries: tuple[Entry, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str  # hf-listing | hf-daily | arxiv | feed | file
    url: str | None = None
    path: Path | None = None
    schedule: str = "*/30 * * * *"  # when `run` fetches it (cron, UTC)
    timeout: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    catch_up_days: int = 7  # hf-daily by date: missed days fetched again, up to this many
    request_budget: int = 60  # hf-daily by date: HTTP requests one run may make


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    tls: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    concurrency: int = 2
    rate_limit: float = 0.0  # messages per second, 0 = unlimited
    retries: int = 2  # extra attempts within one run for 4xx replies and dropped connections
    max_per_connection: int = 100  # messages sent over one connection before reconnecting
    pause_after: int = 3  # permanent failures (5xx) in a row that pause a subscriber
    ca_file: str | None = None  # trust this CA bundle instead of the system's (a private relay)

    def __repr__(self) -> str:  # never show the password
        return (
            f"SmtpConfig(host={self.host!r}, port={self.port}, tls={self.tls!r}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"concurrency={self.concurrency}, rate_limit={self.rate_limit}, retries={self.retries})"
        )


@dataclass(frozen=True)
class DkimConfig:
    """DKIM signing; the private key comes from NEWSLETTER_DKIM_KEY_FILE, never from YAML."""

    domain: str
    selector: str


@dataclass(frozen=True)
class Settings:
    title: str
    sender: str
    base_url: str | None
    sources: tuple[SourceConfig, ...]
    schedule: str
    timezone: str
    max_entries: int
    send_empty: bool
    min_upvotes: int
    smtp: SmtpConfig
    templates: Path | None
    unsubscribe_mailto: str | None
    language: str = "en"
    dkim: DkimConfig | None = None
    subscribe: bool = True  # the public sign-up page (it also needs base_url)
    subscribe_domains: tuple[str, ...] = ()  # sign-ups only from these domains (and their subdomains)
    confirm_hours: int = 48  # how long a sign-up's confirmation link works
    bounce_maildir: Path | None = None  # `bounces: {maildir: PATH}`: `run` reads new DSNs from it
    state: str | None = None  # `newsletter.state:`: a path (relative to the subscribers file) or a postgresql:// URL


@dataclass(frozen=True)
class Subscriber:
    email: str  # normalised: NFC, lower-cased domain
    name: str | None
    keywords: tuple[str, ...]
    exclude: tuple[str, ...]
    schedule: str
    timezone: str
    max_entries: int
    min_upvotes: int
    send_empty: bool
    paused: bool = False  # declared in subscribers.yaml; the store holds every other state
    unsubscribed: bool = False  # ditto (files written by releases before the store owned state)
    home: str = "file"  # where the subscriber is defined: "file" (subscribers.yaml) or "store"
    trending: int = 0  # with keywords: a "Trending" section of this many papers that did not match
    updates: bool = True  # an "Updates" section: papers received before that gained a code link, ...
    must_include: tuple[str, ...] = ()  # paper ids the profile must keep selecting (newsletter/guarantees.py)
    must_exclude: tuple[str, ...] = ()  # paper ids it must never select
    near_misses: bool = False  # end each issue with up to three papers that missed by one clause

    @property
    def trending_only(self) -> bool:
        """No keywords: the subscriber receives the window's trending papers."""
        return not self.keywords


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    subscribers: tuple[Subscriber, ...]
    warnings: tuple[str, ...] = ()
    _by_email: dict[str, Subscriber] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_email", {s.email: s for s in self.subscribers})

    def subscriber(self, email: str) -> Subscriber | None:
        from newsletter.addresses import normalise_address

        return self._by_email.get(normalise_address(email))


@dataclass(frozen=True)
class Hit:
    """One query term found in one field of an entry: the "why you got this"."""

    query: str
    term: str
    field: str  # title | abstract | author
    phrase: bool = False

    @cached_property
    def pair(self) -> tuple[str, str]:
        """(term, field): what a card's highlights and "why" line depend on (one tuple per hit: an
        entry's hits for a query are made once and shared by every subscriber with that query)."""
        return (self.term, self.field)


@dataclass(frozen=True)
class Match:
    entry: Entry
    score: float
    hits: tuple[Hit, ...]
    why: str = ""  # a reason that is not a keyword hit: "▲ 118 upvotes, #2 today"

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.term for h in self.hits))


@dataclass(frozen=True)
class Update:
    """A paper a subscriber received before that changed since: what changed, in a few words."""

    entry: Entry
    kind: str  # code | version | trending
    detail: str  # "code: https://github.com/...", "now v3", "▲ 40 upvotes on HF Daily Papers"
    at: datetime


@dataclass(frozen=True)
class Issue:
    """What one subscriber receives for one slot; id is derived from (subscriber, slot UTC)."""

    id: str
    subscriber: Subscriber
    slot: datetime  # UTC
    built_at: datetime
    matches: tuple[Match, ...]
    first: bool = False
    trending: tuple[Match, ...] = ()  # the "Trending" section: papers that did not match, each with `why`
    updates: tuple[Update, ...] = ()  # papers received before that changed since
    near: tuple[Any, ...] = ()  # nearmiss.NearMiss: papers that missed the profile by one clause

    @property
    def empty(self) -> bool:
        return not self.matches and not self.trending and not self.updates


@dataclass(frozen=True, eq=False)
class RenderedIssue:
    """The HTML and text as the pieces they were assembled from (shared pieces are encoded once per
    batch); `html` and `text` are joined when first read: sending needs only the encoded pieces.
    Two are equal when they show the same issue with the same subject, preheader, HTML, text and
    number of papers left out."""

    issue: Issue  # the papers shown: without those a size budget left out
    subject: str
    preheader: str
    html_pieces: Sequence[str] = field(repr=False)
    text_pieces: Sequence[str] = field(repr=False)
    dropped: int = 0  # papers that matched but did not fit the HTML size budget

    def __post_init__(self) -> None:
        for name in ("html_pieces", "text_pieces"):  # a whole string is one piece, not one per character
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))

    @cached_property
    def html(self) -> str:
        return "".join(self.html_pieces)

    @cached_property
    def text(self) -> str:
        return "".join(self.text_pieces)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderedIssue):
            return NotImplemented
        return ((self.issue, self.subject, self.preheader, self.dropped, self.html, self.text)
                == (other.issue, other.subject, other.preheader, other.dropped, other.html, other.text))

    __hash__ = None  # type: ignore[assignment]  # equal by value, and its pieces are not hashable
