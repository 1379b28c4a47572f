"""The sign-up policy: who may sign up, how often a confirmation mail goes out, how long a link
lives, and what confirming does. Pure rules over a store; the pages are in newsletter/web/signup.py.

Every request gets the same answer whatever the address's standing (new, pending, subscribed,
unsubscribed): what differs is only the mail the address's owner receives, if any. Rate limits
count confirmation mails per address and per client address per hour; over a limit nothing is
sent and the answer is still the same (per client, the page says to wait: that reveals nothing of
any address).
"""

from __future__ import annotations

import hashlib
import secrets as random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from newsletter.addresses import check_address
from newsletter.errors import QuerySyntaxError
from newsletter.links import Links
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Entry, Match, Settings, Subscriber
from newsletter.query import parse
from newsletter.roster import Roster, validate_rows
from newsletter.schedule import check_timezone
from newsletter.store_readers import ReaderStore, Signup

HOUR = timedelta(hours=1)
CADENCES = {"daily": "*", "weekdays": "mon-fri", "weekly": "mon"}
PREVIEW_DAYS = 7
PREVIEW_SHOWN = 10
MAX_QUERIES = 20
MAX_QUERY = 300  # characters


@dataclass(frozen=True)
class Policy:
    """The operator's settings (`subscribe`, `subscribe_domains`, `confirm_hours`) and the limits."""

    enabled: bool = True
    domains: tuple[str, ...] = ()  # empty: any domain
    confirm_hours: int = 48
    per_address: int = 3  # confirmation mails per address per hour
    per_client: int = 10  # sign-up mails per client (IP) address per hour

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The operator's settings; the page also needs base_url, for the links it mails."""
        return cls(settings.subscribe and bool(settings.base_url), settings.subscribe_domains, settings.confirm_hours)

    def allows(self, address: str) -> bool:
        domain = address.rpartition("@")[2]
        return not self.domains or any(domain == d or domain.endswith("." + d) for d in self.domains)


@dataclass(frozen=True)
class ProfileForm:
    """A profile as the pages edit it: validated field by field, each problem next to its field."""

    fields: dict[str, Any] = field(default_factory=dict)  # keys of subscribers.yaml
    errors: dict[str, str] = field(default_factory=dict)  # form field -> message

    @property
    def ok(self) -> bool:
        return not self.errors


def cadence_of(schedule: str) -> str:
    days = schedule.split()[4] if len(schedule.split()) == 5 else "*"
    return next((name for name, d in CADENCES.items() if d == days), "custom")


def schedule_for(cadence: str, settings: Settings) -> str:
    """The cron of a cadence, at the newsletter's own hour (07:00 when that is not a plain time)."""
    parts = settings.schedule.split()
    minute, hour = (parts[0], parts[1]) if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit() else ("0", "7")
    return f"{minute} {hour} * * {CADENCES[cadence]}"


def _queries(text: str, name: str, errors: dict[str, str]) -> list[str]:
    lines = [q.strip() for q in text.splitlines() if q.strip()]
    if len(lines) > MAX_QUERIES:
        errors[name] = f"at most {MAX_QUERIES} lines"
        return lines
    for n, q in enumerate(lines, 1):
        if len(q) > MAX_QUERY:
            errors[name] = f"line {n}: longer than {MAX_QUERY} characters"
            break
        try:
            parse(q)
        except QuerySyntaxError as exc:
            errors[name] = f"line {n}: {exc}"
            break
    return lines


def read_profile(form: Mapping[str, str], settings: Settings, *, with_address: bool) -> ProfileForm:
    """The profile fields of a sign-up or preference form (address and name only when signing up)."""
    fields: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if with_address:
        try:
            fields["email"] = check_address(form.get("email", "")[:320])
        except ValueError as exc:
            errors["email"] = str(exc)
        name = " ".join(form.get("name", "").split())[:100]
        if name:
            fields["name"] = name
    mode = form.get("mode", "keywords")
    keywords = _queries(form.get("keywords", ""), "keywords", errors)
    if mode == "keywords":
        if not keywords and "keywords" not in errors:
            errors["keywords"] = "give at least one keyword, or choose the trending digest"
        fields["keywords"] = keywords
    else:
        fields["keywords"] = []
    fields["exclude"] = _queries(form.get("exclude", ""), "exclude", errors)
    cadence = form.get("cadence", "daily")
    if cadence in CADENCES:
        fields["schedule"] = schedule_for(cadence, settings)
    elif cadence != "custom":
        errors["cadence"] = "choose daily, weekdays or weekly"
    zone = form.get("timezone", "").strip() or settings.timezone
    try:
        check_timezone(zone)
        fields["timezone"] = zone
    except ValueError as exc:
        errors["timezone"] = str(exc)
    if "max_entries" in form:
        raw = form["max_entries"].strip()
        if raw.isdigit() and 1 <= int(raw) <= 50:
            fields["max_entries"] = int(raw)
        else:
            errors["max_entries"] = "a number from 1 to 50"
    return ProfileForm(fields, errors)


def preview(entries: list[Entry], fields: Mapping[str, Any]) -> list[Match]:
    """What this profile would have brought from `entries` (the last days'), best first."""
    keywords = list(fields.get("keywords") or [])
    exclude = list(fields.get("exclude") or [])
    index = EntryIndex(entries)
    if keywords:
        return index.select(Profile.from_strings(keywords, exclude), limit=PREVIEW_SHOWN)
    ranked = sorted(entries, key=lambda e: (-(e.upvotes or 0), e.id))
    if exclude:
        dropped = set()
        for q in exclude:
            dropped |= {e.id for e in (m.entry for m in index.select(Profile((parse(q),))))}
        ranked = [e for e in ranked if e.id not in dropped]
    return [Match(e, 0.0, ()) for e in ranked[:PREVIEW_SHOWN]]


def recent(store: ReaderStore, now: datetime, days: int = PREVIEW_DAYS) -> list[Entry]:
    return store.entries(since=now - timedelta(days=days), until=now)


# --- requesting and confirming --------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    to: str
    subject: str
    text: str


def _bucket(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"  # no addresses kept in clear


def request(store: ReaderStore, config: Config, policy: Policy, links: Links, fields: Mapping[str, Any],
            client: str, now: datetime, manage_url: str | None) -> Notice | None:
    """Record a sign-up (validated `fields`) and say which mail to send, if any. A subscriber in good
    standing is told so (with their manage link) instead of being signed up twice; everyone else
    (new, pending, unsubscribed, bounced) gets a fresh confirmation link, which replaces any earlier one."""
    email = str(fields["email"])
    title = config.settings.title
    store.purge(now, now - HOUR)  # unconfirmed sign-ups past their expiry, spent rate counts
    if not store.take_rate([(_bucket("address", email), policy.per_address), (_bucket("client", client),
                                                                              policy.per_client)], now - HOUR, now):
        return None
    member = Roster(config, store).member(email)
    if member is not None and member.standing.state in ("active", "paused"):
        return Notice(email, f"You are subscribed to {title}",
                      f"Someone (probably you) asked to subscribe this address to {title}.\n\n"
                      f"It is subscribed already. To change what you receive, or to unsubscribe:\n{manage_url}\n\n"
                      "If it was not you, ignore this mail: nothing has changed.\n")
    nonce = random.token_urlsafe(12)
    expires = now + timedelta(hours=policy.confirm_hours)
    store.put_signup(Signup(email, nonce, dict(fields), now, expires))
    return Notice(email, f"Confirm your subscription to {title}",
                  f"Someone (probably you) asked to subscribe this address to {title}.\n\n"
                  f"To confirm, open this link and press the button:\n{links.confirm(email, nonce, expires)}\n\n"
                  f"The link works for {policy.confirm_hours} hours. If it was not you, ignore this mail: "
                  "nothing happens without the button.\n")


def pending(store: ReaderStore, email: str, nonce: str, now: datetime) -> Signup | None:
    """The sign-up a confirmation link names, if it is still waiting (not used, replaced or purged)."""
    found = store.signup(email)
    if found is None or found.nonce != nonce or found.expires_at <= now:
        return None
    return found


def confirm(store: ReaderStore, config: Config, email: str, nonce: str, now: datetime,
            env: Mapping[str, str]) -> bool:
    """Make the sign-up a store-held subscriber (or lift the unsubscribe of a file-defined one).
    False if the link's sign-up is gone."""
    found = pending(store, email, nonce, now)
    if found is None:
        return False
    subscriber: Subscriber | None = None
    if config.subscriber(email) is None:
        item = {k: v for k, v in found.profile.items() if v not in (None, [], ())}
        (subscriber,) = validate_rows([(1, item)], config.path, config, dict(env))
    return store.confirm_signup(email, nonce, subscriber, now)
