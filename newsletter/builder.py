"""Building issues: due subscribers -> selected entries -> rendered digest -> message bytes.

Works a batch at a time. What a batch shares is computed once: the entry index of its window
(reused by the next batch when the window is the same), the numpy batch matcher, parsed queries,
and the renderer's cache of each entry's card. Nothing here writes state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter import issues as issuelib
from newsletter import message as messagelib
from newsletter.errors import ConfigError
from newsletter.issues import Due, Window
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Issue, Match, RenderedIssue, Subscriber
from newsletter.query import Query, parse
from newsletter.rendering import HTML_BUDGET, environment, render
from newsletter.store import NewIssue, Store

BATCH_FROM = 64  # due subscribers from which matching runs as one numpy batch (same results)
CARDS_KEPT = 20_000  # rendered cards kept across batches; past this the renderer starts afresh


@dataclass(frozen=True)
class Built:
    """An issue built now: with a message when there is something to send, else the reason."""

    due: Due
    issue: Issue
    rendered: RenderedIssue | None
    message: bytes | None
    reason: str  # why nothing goes out, or "" when it does

    @property
    def subscriber(self) -> Subscriber:
        return self.due.subscriber

    @property
    def sends(self) -> bool:
        return self.message is not None

    def to_record(self) -> NewIssue:
        # only the papers the email shows count as delivered (the size budget may leave some out)
        shown = self.rendered.issue if self.rendered is not None else self.issue
        ids = tuple(m.entry.id for m in shown.matches)
        sub = self.due.subscriber
        return NewIssue(
            self.issue.id, sub.email, self.issue.slot, self.issue.built_at, "pending" if self.sends else "empty",
            ids, self.rendered.subject if self.rendered else None,
            messagelib.message_id_from_bytes(self.message) if self.message else None, self.message,
            self.reason or None, issuelib.expires_at(sub, self.issue.slot),
            self.rendered.dropped if self.rendered is not None else 0)


class Builder:
    """Builds the issues of many batches at one `now` with one configuration and link secret."""

    def __init__(self, config: Config, store: Store, now: datetime, *, link_secret: str,
                 dkim_key: bytes | None = None) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.link_secret = link_secret
        self.dkim_key = dkim_key
        if config.settings.dkim is not None and not dkim_key:
            raise ConfigError("newsletter.dkim is set but NEWSLETTER_DKIM_KEY_FILE is not: point it at the "
                              "PEM private key of the selector")
        self.env = environment(config.settings.templates)
        self._cache: dict = {}  # type: ignore[type-arg]  # rendered entry cards, shared by the batches
        self._queries: dict[str, Query] = {}
        self._since: datetime | None = None
        self._index: EntryIndex | None = None
        self._window: Window | None = None
        self._matcher: object | None = None

    def on(self, store: Store) -> Builder:
        """The same builder reading another connection (the producer thread's)."""
        return Builder(self.config, store, self.now, link_secret=self.link_secret, dkim_key=self.dkim_key)

    def _query(self, text: str) -> Query:
        q = self._queries.get(text)
        if q is None:
            q = self._queries[text] = parse(text)
        return q

    def profile(self, sub: Subscriber) -> Profile:
        return Profile(tuple(map(self._query, sub.keywords)), tuple(map(self._query, sub.exclude)), sub.min_upvotes)

    def _index_for(self, since: datetime) -> tuple[EntryIndex, Window]:
        """The entries of the window starting at `since`; a wider cached window serves too."""
        if self._index is None or self._since is None or since < self._since:
            self._since = since
            self._index = EntryIndex(self.store.entries(since=since, until=self.now))
            self._window = Window(self._index, self.now)
            self._matcher = None
            self._cache.clear()
        assert self._window is not None
        return self._index, self._window

    def build(self, batch: Sequence[Due]) -> list[Built]:
        if not batch:
            return []
        index, window = self._index_for(min(d.since for d in batch))
        if any(getattr(r, "cards", 0) > CARDS_KEPT for r in self._cache.values()):
            self._cache.clear()  # memory stays bounded whatever the number of subscribers
        ids = [e.id for e in index.entries]
        delivered = self.store.delivered_among([d.subscriber.email for d in batch], ids)
        profiles = {d.subscriber.email: self.profile(d.subscriber) for d in batch}
        picked = self._batch_select(index, window, batch, profiles, delivered) if len(batch) >= BATCH_FROM else {}
        out = []
        for d in batch:
            sub = d.subscriber
            mine = delivered.get(sub.email, set())
            matches = picked.get(sub.email)
            if matches is None:  # the exact path: few subscribers, or entries of the window delivered before
                candidates = window.mask(d.since, mine)
                matches = index.select(profiles[sub.email], candidates, limit=sub.max_entries)
            issue = Issue(issuelib.issue_id(sub.email, d.slot), sub, d.slot, self.now, tuple(matches), d.first)
            if issue.empty and not sub.send_empty:
                reason = ("none of the new entries matched the profile" if window.mask(d.since) else "no new entries")
                out.append(Built(d, issue, None, None, reason))
                continue
            rendered, msg = self._render(issue)
            out.append(Built(d, issue, rendered, msg, ""))
        return out

    def _batch_select(self, index: EntryIndex, window: Window, batch: Sequence[Due], profiles: dict[str, Profile],
                      delivered: dict[str, set[str]]) -> dict[str, list[Match]]:
        """Select for many subscribers at once: one numpy batch per window start, each capped at
        the subscriber's own max_entries. Subscribers with delivered entries in the window take
        the exact path."""
        from newsletter.batch import BatchMatcher

        if self._matcher is None:
            self._matcher = BatchMatcher(index)
        matcher: BatchMatcher = self._matcher  # type: ignore[assignment]
        by_since: dict[datetime, list[Subscriber]] = {}
        for d in batch:
            if d.subscriber.email not in delivered:
                by_since.setdefault(d.since, []).append(d.subscriber)
        out: dict[str, list[Match]] = {}
        for since, subs in by_since.items():
            limit = max(s.max_entries for s in subs)
            result = matcher.select_many([profiles[s.email] for s in subs], limit, window.mask(since))
            for p, sub in enumerate(subs):
                out[sub.email] = matcher.matches(profiles[sub.email], result.top(p)[: sub.max_entries])
        return out

    def _render(self, issue: Issue) -> tuple[RenderedIssue, bytes]:
        settings = self.config.settings
        links = messagelib.unsubscribe_links(settings, issue.subscriber.email, self.link_secret)
        rendered = render(issue, settings, unsubscribe_url=links.visible,
                          change_url=messagelib.change_profile_url(settings, issue.subscriber.email),
                          env=self.env, cache=self._cache, budget=HTML_BUDGET)
        msg = messagelib.to_bytes(messagelib.build(rendered, settings, issue.subscriber, links, self.now))
        if settings.dkim is not None:
            from dkim import DKIMException

            assert self.dkim_key is not None
            try:
                msg = messagelib.dkim_sign(msg, settings.dkim.domain, settings.dkim.selector, self.dkim_key)
            except DKIMException as exc:
                raise ConfigError(f"DKIM signing failed ({type(exc).__name__}: {exc}); check the key") from exc
        return rendered, msg
