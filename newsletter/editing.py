"""Editing one subscriber wherever they live: subscribers.yaml (comment-preserving, atomic, through
newsletter/subscribers.py) or the store. Each edit is one transaction: every change of a `set` is
applied and validated together, and a refused edit changes nothing.

Pausing, resuming and unsubscribing are state, so they go to the store for both kinds; `resume`
also drops a `paused: true` an editor wrote into the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ruamel.yaml.comments import CommentedMap

from newsletter import guarantees
from newsletter import subscribers as yamledit
from newsletter.addresses import check_address
from newsletter.deployment import Deployment
from newsletter.errors import ConfigError, QuerySyntaxError
from newsletter.issues import profile_of
from newsletter.matching import Profile
from newsletter.models import Config, Subscriber
from newsletter.replay import Replay, replay
from newsletter.roster import Roster, validate_rows, as_dict
from newsletter.standing import pause_end, pause_over, until_reason
from newsletter.store_readers import ReaderStore


@dataclass(frozen=True)
class Change:
    """One change of a `set`: replace a key's value, or add/remove queries of a list."""

    op: str  # set | add | remove
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Edited:
    subscriber: Subscriber | None  # after the edit (None when removed)
    what: str
    home: str  # file | store


def _locate(dep: Deployment, email: str) -> Subscriber:
    with dep.reader() as store:
        sub = Roster(dep.config, store).find(email)
    if sub is None:
        raise ConfigError(f"no subscriber '{email}' in {dep.config.path} or the state store "
                          "(see `newsletter subscribers list`)")
    return sub


def _validated(dep: Deployment, item: dict[str, Any], env: Mapping[str, str]) -> Subscriber:
    (sub,) = validate_rows([(1, item)], dep.config.path, dep.config, dict(env))
    return sub


def add(dep: Deployment, env: Mapping[str, str], now: datetime, *, to_store: bool, email: str, **fields: Any) -> Edited:
    """Add a subscriber to the file (default) or the store; refused when the address exists anywhere."""
    try:
        address = check_address(email)
    except ValueError as exc:
        raise ConfigError(f"email '{email}': {exc}") from None
    # a subscriber added to the file needs the state only to be read (it may be in a read-only folder)
    with dep.store() if to_store else dep.reader() as store:
        if Roster(dep.config, store).find(address) is not None:
            raise ConfigError(f"'{address}' is already a subscriber (use `subscribers set` to change it)")
        if to_store:
            item = {"email": address, **{k: v for k, v in fields.items() if v not in (None, [], ())}}
            sub = _validated(dep, item, env)
            store.add_subscribers([sub], now)
            return Edited(store.subscriber(address), f"added {address} to the state store", "store")
    config, what = yamledit.edit(dep.config.path, yamledit.add(address, **fields), env)
    return Edited(config.subscriber(address), what, "file")


def _apply(item: dict[str, Any], changes: Sequence[Change]) -> None:
    for ch in changes:
        if ch.op == "set":
            value = yamledit._value(ch.key, list(ch.values))
            item[ch.key] = list(value) if ch.key in yamledit.LIST_KEYS else value
            continue
        current = list(item.get(ch.key) or [])
        for q in ch.values:
            if ch.op == "remove":
                if q not in current:
                    raise ConfigError(f"{item['email']} has no {ch.key} query '{q}' "
                                      f"(it has: {', '.join(current) or 'none'})")
                current.remove(q)
            elif q in current:
                raise ConfigError(f"{item['email']} already has the {ch.key} query '{q}'")
            else:
                current.append(q)
        item[ch.key] = current


def replay_changes(dep: Deployment, email: str, changes: Sequence[Change], since: datetime) -> Replay:
    """What these changes to a subscriber's keywords and excludes would gain and lose over the stored
    papers first seen after `since`, with the issues they would have gone into. Nothing is written."""
    sub = _locate(dep, email)
    item = {k: v for k, v in as_dict(sub).items() if v is not None}
    _apply(item, changes)
    try:
        new = Profile.from_strings(item.get("keywords") or [], item.get("exclude") or [], sub.min_upvotes)
    except QuerySyntaxError as exc:
        raise ConfigError(f"{email}: {exc}") from exc
    with dep.reader() as store:
        entries = store.entries(since=since)
        issues = store.issue_heads_of([sub.email]).get(sub.email, [])
    return replay(entries, profile_of(sub), new, since, who=sub.email, issues=issues)


def set_fields(dep: Deployment, env: Mapping[str, str], email: str, changes: Sequence[Change]) -> Edited:
    """Apply every change at once; validated together, written once (or not at all)."""
    for ch in changes:
        if ch.op == "set":
            yamledit.set_value(email, ch.key, list(ch.values))  # refuses unknown keys with a did-you-mean
            if ch.key in ("paused", "unsubscribed"):
                raise ConfigError(f"'{ch.key}' is state, kept in the store: use `newsletter subscribers "
                                  f"{'pause' if ch.key == 'paused' else 'remove'}`/`resume`")
    sub = _locate(dep, email)
    if sub.home == "store":
        item = {k: v for k, v in as_dict(sub).items() if v is not None}
        _apply(item, changes)
        new = _validated(dep, item, env)
        _keeps_guarantees(dep, new)
        with dep.store() as store:
            store.update_subscriber(new)
        return Edited(new, f"changed {', '.join(dict.fromkeys(c.key for c in changes))} of {sub.email}", "store")

    def change(doc: CommentedMap) -> str:
        what = []
        for ch in changes:
            if ch.op == "set":
                what.append(yamledit.set_value(email, ch.key, list(ch.values))(doc))
            else:
                what.append(yamledit.change_list(email, ch.key, add=list(ch.values) if ch.op == "add" else [],
                                                 remove=list(ch.values) if ch.op == "remove" else [])(doc))
        return "; ".join(dict.fromkeys(what))

    def verify(config: Config) -> None:
        changed = config.subscriber(email)
        if changed is not None:
            _keeps_guarantees(dep, changed)

    config, what = yamledit.edit(dep.config.path, change, env, verify)
    return Edited(config.subscriber(email), what, "file")


def _keeps_guarantees(dep: Deployment, sub: Subscriber) -> None:
    """Refuse (ConfigError: nothing is written) a profile that would lose a must_include paper or
    select a must_exclude one."""
    ids = guarantees.wanted([sub])
    if not ids:
        return
    with dep.reader() as store:
        papers = store.entries_by_id(sorted(ids))
    problems = guarantees.broken(sub, papers)
    if problems:
        raise ConfigError(f"the edit was not saved: {problems[0]}" if len(problems) == 1 else
                          f"the edit was not saved: {len(problems)} guarantees broken", tuple(problems))


def remove(dep: Deployment, env: Mapping[str, str], email: str) -> Edited:
    sub = _locate(dep, email)
    if sub.home == "store":
        with dep.store() as store:
            store.remove_subscriber(sub.email)
        return Edited(None, f"removed {sub.email} from the state store", "store")
    _, what = yamledit.edit(dep.config.path, yamledit.remove(email), env)
    return Edited(None, what, "file")


def unsubscribe(dep: Deployment, email: str, now: datetime) -> Edited:
    """Record an unsubscribe for the subscriber (store state; `resume` undoes it)."""
    sub = _locate(dep, email)
    with dep.store() as store:
        store.set_unsubscribed(sub.email, now)
    return Edited(sub, f"unsubscribed {sub.email}", sub.home)


EDITOR_PAUSE = "paused by an editor (`newsletter subscribers resume` to resume)"
READER_PAUSE = "paused by the reader (resume from the preference centre)"


def pause(dep: Deployment, env: Mapping[str, str], email: str, now: datetime, *, on: bool,
          until: date | None = None, by_reader: bool = False) -> Edited:
    """Pause (store state; `until`: nothing is sent before that day in the subscriber's zone, then one
    catch-up issue) or resume (clears every stop: pause, failures, unsubscribe)."""
    sub = _locate(dep, email)
    end = None
    if on and until is not None:
        end = pause_end(until, sub.timezone)
        if pause_over(end, now):
            raise ConfigError(f"pause until {until:%Y-%m-%d}: that day has begun already in {sub.timezone}; "
                              "give a later date")
    with ReaderStore(dep.state) as store:
        if not on:
            store.set_pause(sub.email, None, now)
        elif until is None:
            store.set_pause(sub.email, READER_PAUSE if by_reader else EDITOR_PAUSE, now)
        else:
            hint = "resume from the preference centre to resume earlier" if by_reader else \
                "`newsletter subscribers resume` resumes earlier"
            store.set_pause(sub.email, until_reason("the reader" if by_reader else "an editor", until, hint), now, end)
    what = f"{'paused' if on else 'resumed'} {sub.email}"
    if on and until is not None:
        what += f" until {until:%Y-%m-%d}"
    if not on and sub.home == "file" and (sub.paused or sub.unsubscribed):
        for key in ("paused", "unsubscribed"):
            if getattr(sub, key):
                yamledit.edit(dep.config.path, yamledit.flag(sub.email, key, False), env)
        what += f" (and dropped the flag from {dep.config.path.name})"
    return Edited(sub, what, sub.home)
