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
from newsletter import nearmiss, records, trending, updates
from newsletter.issues import Due, Window
from newsletter.matching import EntryIndex, Profile, gc_paused
from newsletter.models import Config, Issue, Match, RenderedIssue, Subscriber
from newsletter.query import Query, parse
from newsletter.composer import Composer
from newsletter.store import NewIssue, Store
from newsletter.store_readers import link_versions

BATCH_FROM = 64  # due subscribers from which matching runs as one numpy batch (same results)


@dataclass(frozen=True)
class Built:
    """An issue built now: with a message when there is something to send, else the reason."""

    due: Due
    issue: Issue
    rendered: RenderedIssue | None
    message: bytes | None
    reason: str  # why nothing goes out, or "" when it does
    message_id: str | None = None  # the message's Message-ID

    @property
    def subscriber(self) -> Subscriber:
        return self.due.subscriber

    @property
    def sends(self) -> bool:
        return self.message is not None

    def to_record(self) -> NewIssue:
        # only the papers the email shows count as delivered (the size budget may leave some out)
        shown = self.rendered.issue if self.rendered is not None else self.issue
        ids = tuple(m.entry.id for m in shown.matches + shown.trending)
        sub = self.due.subscriber
        return NewIssue(
            self.issue.id, sub.email, self.issue.slot, self.issue.built_at, "pending" if self.sends else "empty",
            ids, self.rendered.subject if self.rendered else None,
            self.message_id, self.message,
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
        self.compose = Composer(config.settings, link_secret=link_secret, dkim_key=dkim_key)
        self._queries: dict[str, Query] = {}
        self._since: datetime | None = None
        self._index: EntryIndex | None = None
        self._window: Window | None = None
        self._matcher: object | None = None
        self._trending: trending.Trending | None = None
        self._changes: list[records.Change] | None = None

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
            self._trending = None
            self.compose.forget()
        assert self._window is not None
        return self._index, self._window

    def build(self, batch: Sequence[Due]) -> list[Built]:
        if not batch:
            return []
        with gc_paused():  # a batch allocates hundreds of thousands of small objects and no cycles
            return self._build(batch)

    def _build(self, batch: Sequence[Due]) -> list[Built]:
        index, window = self._index_for(min(d.since for d in batch))
        self.compose.bound()
        ids = [e.id for e in index.entries]
        emails = [d.subscriber.email for d in batch]
        delivered = self.store.delivered_among(emails, ids)
        profiles = {d.subscriber.email: self.profile(d.subscriber) for d in batch}
        versions = link_versions(self.store, emails) if self.compose.web is not None else {}
        picked = self._batch_select(index, window, batch, profiles, delivered) if len(batch) >= BATCH_FROM else {}
        changes = self._changes_since(min(d.since for d in batch))
        received = self.store.delivered_among([d.subscriber.email for d in batch if d.subscriber.updates],
                                              sorted({c.id for c in changes})) if changes else {}
        out = []
        for d in batch:
            sub = d.subscriber
            profile = profiles[sub.email]
            mine = delivered.get(sub.email, set())
            candidates = window.mask(d.since, mine)
            matches: list[Match] | None
            if sub.trending_only:
                matches = self._trending_top(index, window, d, candidates & ~self._excluded(index, profile),
                                             sub.max_entries)
            else:
                matches = picked.get(sub.email)
                if matches is None:  # the exact path: few subscribers, or entries of the window delivered before
                    matches = index.select(profile, candidates, limit=sub.max_entries)
            assert matches is not None
            extra: list[Match] = []
            if sub.trending and not sub.trending_only:
                # papers that did not match at all (not those the max_entries cap left out)
                matched = index.profile_mask(profile, candidates)
                extra = self._trending_top(index, window, d, candidates & ~matched & ~self._excluded(index, profile),
                                           sub.trending)
            news = updates.for_subscriber(changes, d.since, self.now, received.get(sub.email, set()))
            near = nearmiss.near_misses(index, profile, candidates, {m.entry.id for m in (*matches, *extra)}) \
                if sub.near_misses and not sub.trending_only else ()
            issue = Issue(issuelib.issue_id(sub.email, d.slot), sub, d.slot, self.now, tuple(matches), d.first,
                          trending=tuple(extra), updates=news, near=near)
            if issue.empty and not sub.send_empty:
                reason = ("no new entries" if not window.mask(d.since) else
                          "none of the new entries has a community signal (upvotes) to trend with"
                          if sub.trending_only else "none of the new entries matched the profile")
                out.append(Built(d, issue, None, None, reason))
                continue
            rendered, msg = self.compose(issue, versions.get(sub.email, 0))
            out.append(Built(d, issue, rendered, msg, "", messagelib.message_id(self.config.settings, issue.id)))
        return out

    def _trending_top(self, index: EntryIndex, window: Window, d: Due, candidates: int, limit: int) -> list[Match]:
        if self._trending is None:
            self._trending = trending.Trending(index)
        return self._trending.top(window.mask(d.since), candidates, limit, period=trending.period_of(d.since, self.now),
                                  min_upvotes=d.subscriber.min_upvotes)

    @staticmethod
    def _excluded(index: EntryIndex, profile: Profile) -> int:
        mask = 0
        for q in profile.exclude:
            mask |= index.query_mask(q)
        return mask

    def _changes_since(self, since: datetime) -> list[records.Change]:
        """Changes to stored papers seen in (since, now] (the log is read once per builder)."""
        if self._changes is None:
            self._changes = records.load_changes(self.store)
        return updates.in_window(self._changes, since, self.now)

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
            if d.subscriber.email not in delivered and not d.subscriber.trending_only:
                by_since.setdefault(d.since, []).append(d.subscriber)
        out: dict[str, list[Match]] = {}
        for since, subs in by_since.items():
            limit = max(s.max_entries for s in subs)
            result = matcher.select_many([profiles[s.email] for s in subs], limit, window.mask(since))
            for p, sub in enumerate(subs):
                out[sub.email] = matcher.matches(profiles[sub.email], result.top(p)[: sub.max_entries])
        return out
