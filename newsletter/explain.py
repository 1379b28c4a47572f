"""`newsletter explain PAPER`: what happened to one paper for one subscriber (or each), and why.

Answered from the stored papers and the ledger, with the matcher the issues were built with
(`matching.EntryIndex`), never a second one. An issue's window is what the builder used: papers
first seen after the subscriber's previous issue was built (for a first issue, one schedule period
before its slot) up to this issue's build time, less what they had received before. The reasons,
in the order they are looked for:

    delivered    in issue X, sent on D (or pending delivery)
    no_match     no keyword query matches it (whenever it came; with --issue, after the window)
    state        no issue covers the paper: the subscriber was paused / unsubscribed / bounced
    window       first seen outside every issue's window (before the first, or after the last)
    excluded     a keyword query matches, an exclude removes it: the exact term and field
    upvotes      below the subscriber's min_upvotes
    held_back    delivered before, in issue X: a paper is sent once
    ranked_out   matched but ranked N with a cap of M (and the score of the last one that made it)
    cut          within the cap, but the size budget left it out of the email
    undelivered  in the issue, which failed or expired

The verdicts are pure (`_settled`, `_verdict`, `_ranked`); `explain` reads the store in bulk, a batch of subscribers at a time: for one
subscriber (or an issue asked about, or a preview) every issue; for many, only what decides each
one (`Store.issues_around`: the issues just before and after the paper arrived), after settling
those the paper never reached or never matched, and ranks every profile of a window at once
(`BatchMatcher.places`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from newsletter.entries import arxiv_id
from newsletter.errors import ConfigError
from newsletter.schedule import Schedule
from newsletter.batch import BatchMatcher, Place
from newsletter.matching import EntryIndex, Profile, gc_paused, where_it_hits
from newsletter.models import Config, Entry, Subscriber
from newsletter.query import Query, parse
from newsletter.roster import Roster
from newsletter.standing import Standing, standing
from newsletter.store import IssueRow, NewIssue, StateRow, Store

BATCH = 2000  # subscribers read and ranked at a time


@dataclass(frozen=True)
class Reason:
    """What happened to a paper for one subscriber: a code (see the module) and the sentence."""

    subscriber: str
    code: str
    sentence: str
    issue: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"subscriber": self.subscriber, "reason": self.code, "sentence": self.sentence, "issue": self.issue}


def find_paper(store: Store, text: str) -> Entry:
    """A stored paper by entry id, arXiv id (or an arXiv / Hugging Face URL), or words of its title."""
    text = text.strip()
    aid = arxiv_id(text)
    found = store.entries_by_id([k for k in (text, aid) if k])
    for key in (text, aid):
        if key in found:
            return found[key]
    if aid and ("/" in text or text.startswith(aid)):
        raise ConfigError(f"no stored paper {aid}: it never came from a source (newsletter entries lists them)")
    words = text.casefold()
    titled = [(i, t) for i, t in store.entry_titles() if words and words in " ".join(t.split()).casefold()]
    if len(titled) == 1:
        return store.entries_by_id([titled[0][0]])[titled[0][0]]
    if not titled:
        raise ConfigError(f"no stored paper matches '{text}' (an arXiv id, a paper URL, an entry id or "
                           "words of its title)")
    shown = "; ".join(f"{i}: {t[:60]}" for i, t in titled[:5])
    raise ConfigError(f"'{text}' matches {len(titled)} stored papers, e.g. {shown}: give its id")


def _day(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d}" if when else "?"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _since(sub: Subscriber, issues: Sequence[IssueRow], k: int) -> datetime:
    """Where issue k's window starts (as the builder computed it)."""
    if k > 0:
        return issues[k - 1].built_at
    return issues[0].built_at - _period(sub.schedule, sub.timezone, issues[0].slot)


@lru_cache(maxsize=4096)
def _period(schedule: str, zone: str, slot: datetime) -> timedelta:
    """One schedule period before a slot (most subscribers share a few schedules and slots)."""
    return Schedule(schedule, zone).period_before(slot)


def _state_then(sub: Subscriber, state: StateRow | None, now_standing: Standing) -> str:
    if now_standing.active:
        return ""
    since = None
    if state is not None:
        since = {"unsubscribed": state.unsubscribed_at, "bounced": state.bounced_at,
                 "paused": state.paused_at}.get(now_standing.state)
    when = f" since {_day(since)}" if since else ""
    return f"{sub.email} is {now_standing.state}{when} ({now_standing.reason})"


@dataclass(frozen=True)
class History:
    """What the ledger holds about one subscriber around the paper asked about."""

    target: IssueRow | None  # the issue whose window could hold the paper (or the one asked about)
    since: datetime | None  # where the target's window starts
    last_built: datetime | None  # when the newest issue read was built
    carriers: tuple[IssueRow, ...]  # the subscriber's issues that carried the paper, oldest first
    before: frozenset[str] = frozenset()  # papers delivered before the target, of those read
    prior: IssueRow | None = None  # an issue before the target that carried the paper
    asked: bool = False  # the target is the issue asked about (not the first built after the paper came)


def history_of(sub: Subscriber, paper: Entry, issues: Sequence[IssueRow], carried: Mapping[str, set[str]],
               issue_id: str | None = None) -> History:
    """From every issue of the subscriber and the papers each carried (of those that matter)."""
    issues = sorted(issues, key=lambda i: i.built_at)
    carriers = tuple(i for i in issues if paper.id in carried.get(i.id, ()))
    last = issues[-1].built_at if issues else None
    if issue_id is not None:
        k = next((k for k, i in enumerate(issues) if i.id == issue_id), None)
        if k is None:
            raise ConfigError(f"{sub.email} has no issue {issue_id}")
    else:
        seen = paper.first_seen
        k = next((k for k, i in enumerate(issues) if seen is None or i.built_at >= seen), None)
        if k is None:
            return History(None, None, last, carriers)
    before = frozenset().union(*(carried.get(i.id, ()) for i in issues[:k] if i.status in DELIVERED))
    prior = next((i for i in issues[:k] if paper.id in carried.get(i.id, ())), None)
    return History(issues[k], _since(sub, issues, k), last, carriers, before, prior, issue_id is not None)


def history_around(sub: Subscriber, paper: Entry, around: tuple[datetime | None, IssueRow | None] | None,
                   carriers: Sequence[IssueRow]) -> History:
    """From `Store.issues_around` (when the last issue before the paper arrived was built, and the
    next issue) and the subscriber's issues that carried the paper. Windows do not overlap, so no
    paper first seen in the target's window was delivered before it: `before` is empty."""
    prev_built, target = around or (None, None)
    if target is None or (paper.first_seen is not None and target.built_at < paper.first_seen):
        return History(None, None, target.built_at if target else prev_built, tuple(carriers))
    since = prev_built or target.built_at - _period(sub.schedule, sub.timezone, target.slot)
    return History(target, since, target.built_at, tuple(carriers))


@dataclass(frozen=True)
class _Rank:
    """A paper that passed every other test: its rank in the target issue decides."""

    sub: Subscriber
    target: IssueRow
    since: datetime
    until: datetime
    gone: frozenset[str]  # papers of the window delivered before (never ranked)


class Shared:
    """What explaining one paper to many subscribers shares: the paper's own index, parsed queries,
    and each window's index and matcher."""

    def __init__(self, paper: Entry, papers: Callable[[datetime, datetime], Sequence[Entry]]) -> None:
        self.paper = paper
        self.alone = EntryIndex([paper])
        self.papers = papers  # the stored papers first seen in (since, until]
        self._matched: dict[str, bool] = {}
        self._queries: dict[str, Query] = {}
        self._profiles: dict[tuple[object, ...], Profile] = {}
        self._windows: dict[tuple[datetime, datetime], tuple[EntryIndex, dict[str, int]]] = {}
        self._matchers: dict[tuple[datetime, datetime], BatchMatcher] = {}

    def profile(self, sub: Subscriber) -> Profile:
        key = (sub.keywords, sub.exclude, sub.min_upvotes)
        found = self._profiles.get(key)
        if found is None:
            found = self._profiles[key] = Profile(tuple(map(self.query, sub.keywords)),
                                                  tuple(map(self.query, sub.exclude)), sub.min_upvotes)
        return found

    def matches(self, text: str) -> bool:
        """Whether the query matches the paper (each distinct query evaluated once)."""
        found = self._matched.get(text)
        if found is None:
            found = self._matched[text] = bool(self.alone.query_mask(self.query(text)))
        return found

    def query(self, text: str) -> Query:
        found = self._queries.get(text)
        if found is None:
            found = self._queries[text] = parse(text)
        return found

    def window(self, since: datetime, until: datetime) -> tuple[EntryIndex, dict[str, int]]:
        """The stored papers first seen in (since, until], indexed, with each one's position."""
        found = self._windows.get((since, until))
        if found is None:
            papers = self.papers(since, until)
            found = self._windows[(since, until)] = (EntryIndex(papers), {e.id: i for i, e in enumerate(papers)})
        return found

    def places(self, pending: Sequence[_Rank]) -> list[Place]:
        """The paper's place in each pending issue, ranked by the builder's matcher: one array
        operation per window for every profile at once (trending-only profiles by upvotes)."""
        out: list[Place] = [Place(0, 0, 0.0, -1, 0.0)] * len(pending)
        groups: dict[tuple[datetime, datetime, frozenset[str]], list[int]] = {}
        for n, p in enumerate(pending):
            index, bit = self.window(p.since, p.until)
            groups.setdefault((p.since, p.until, frozenset(p.gone & bit.keys())), []).append(n)
        for (since, until, gone), members in groups.items():
            index, bit = self.window(since, until)
            candidates = index.all
            for entry_id in gone:
                candidates &= ~(1 << bit[entry_id])
            target = bit[self.paper.id]
            trending = [n for n in members if pending[n].sub.trending_only]
            if trending:
                chosen = [e for i, e in enumerate(index.entries) if candidates >> i & 1]
                ranked = sorted(chosen, key=lambda e: (-(e.upvotes or 0), e.id))
                rank = next(k for k, e in enumerate(ranked, 1) if e.id == self.paper.id)
                for n in trending:
                    edge = ranked[min(pending[n].sub.max_entries, len(ranked)) - 1]
                    out[n] = Place(rank, len(ranked), float(self.paper.upvotes or 0), bit[edge.id],
                                   float(edge.upvotes or 0))
            keyed = [n for n in members if not pending[n].sub.trending_only]
            if keyed:
                matcher = self._matchers.get((since, until))
                if matcher is None:
                    matcher = self._matchers[(since, until)] = BatchMatcher(index)
                found = matcher.places([self.profile(pending[n].sub) for n in keyed], target,
                                       [pending[n].sub.max_entries for n in keyed], candidates)
                for n, place in zip(keyed, found):
                    out[n] = place
        return out


def _settled(paper: Entry, sub: Subscriber, carriers: Sequence[IssueRow], shared: Shared) -> Reason | None:
    """What needs no issue window: an issue delivered the paper, or no keyword query of the profile
    matches it (whenever it came: the most useful answer, and many subscribers' ledgers go unread)."""
    for i in carriers:
        if i.status in DELIVERED or i.status == PREVIEW:
            return _carried(sub.email, paper, i)
    if sub.keywords and not any(shared.matches(text) for text in sub.keywords):
        return _no_match(sub, None)
    return None


def _no_match(sub: Subscriber, issue: str | None) -> Reason:
    return Reason(sub.email, "no_match", f"no keyword query of {sub.email} matches it ({', '.join(sub.keywords)})",
                  issue)


def _verdict(paper: Entry, sub: Subscriber, state: StateRow | None, history: History, shared: Shared,
             settled: bool = False) -> Reason | _Rank:
    """The reason, or what is left to rank when the paper passed every other test (`settled`: what
    `_settled` decides is known not to apply)."""
    email = sub.email
    target = history.target
    if not history.asked and not settled:
        early = _settled(paper, sub, history.carriers, shared)
        if early is not None:
            return early
    if target is None or history.since is None:
        seen = paper.first_seen
        then = _state_then(sub, state, standing(sub, state))
        if then:
            return Reason(email, "state", f"no issue since the paper arrived ({_day(seen)}): {then}")
        last = f" (the last was built on {_day(history.last_built)})" if history.last_built else ""
        return Reason(email, "window", f"first seen on {_day(seen)}, after every issue{last}: the next "
                                       "issue will consider it")
    if any(i.id == target.id for i in history.carriers):
        return _carried(email, paper, target)
    since, until = history.since, target.built_at
    if paper.id in history.before and history.prior is not None:
        prior = history.prior
        return Reason(email, "held_back", f"held back from issue {target.id}: already delivered in issue {prior.id} "
                                          f"on {_day(prior.sent_at or prior.built_at)} (a paper is sent once)", target.id)
    if paper.first_seen is None or not since < paper.first_seen <= until:
        return Reason(email, "window", f"not in any source window of {email}: first seen on {_day(paper.first_seen)}, "
                                       f"issue {target.id} covered {_day(since)} to {_day(until)}", target.id)
    if sub.trending_only:
        if paper.upvotes is None:
            return Reason(email, "no_match", "a trending-only profile gets papers with a community signal "
                                             "(upvotes); this one has none", target.id)
    else:
        matched = [text for text in sub.keywords if shared.matches(text)]
        if not matched:
            return _no_match(sub, target.id)
        for text in sub.exclude:
            if shared.matches(text):
                q, first = shared.query(text), shared.query(matched[0])
                place = where_it_hits(shared.alone, q, 0)
                where = f": {place}" if place else ""
                return Reason(email, "excluded", f"matched {first.text} but excluded by NOT {q.text}{where}", target.id)
    if (paper.upvotes or 0) < sub.min_upvotes:
        return Reason(email, "upvotes", f"{paper.upvotes or 0} upvotes, below min_upvotes {sub.min_upvotes}",
                      target.id)
    return _Rank(sub, target, since, until, history.before)


def _ranked(pending: _Rank, place: Place, shared: Shared) -> Reason:
    email, target, cap = pending.sub.email, pending.target, pending.sub.max_entries
    if place.rank > cap:
        index, _ = shared.window(pending.since, pending.until)
        edge = index.entries[place.edge]
        return Reason(email, "ranked_out", f"matched but ranked {_ordinal(place.rank)} of {place.of} in issue "
                                           f"{target.id} with a cap of {cap}: the last paper that made it, "
                                           f"\u201c{edge.title}\u201d, scored {place.edge_score:g} "
                                           f"(this one {place.score:g})", target.id)
    if target.dropped:
        return Reason(email, "cut", f"ranked {_ordinal(place.rank)} of {place.of}, within the cap of {cap}, but the "
                                    f"size budget cut issue {target.id}: {target.entry_count} papers shown, "
                                    f"{target.dropped} left out", target.id)
    if target.status in ("failed", "expired"):
        return Reason(email, "undelivered", f"in issue {target.id}, which was never delivered ({target.status}"
                                            f"{': ' + target.last_error if target.last_error else ''})", target.id)
    return Reason(email, "ranked_out", f"not in issue {target.id} (built on {_day(target.built_at)}, {target.status})",
                  target.id)


DELIVERED = ("sent", "pending")  # statuses of an issue that delivered (or will deliver) what it carried
PREVIEW = "preview"  # the status of an issue a preview builds now (never recorded)


def planned_row(record: NewIssue) -> tuple[IssueRow, set[str]]:
    """An issue built in memory (a preview) as a ledger row and the papers it carries."""
    row = IssueRow(record.id, record.subscriber, record.slot, record.built_at, PREVIEW, record.subject, None, None,
                   len(record.entry_ids), 0, None, None, None, None, False, dropped=record.dropped)
    return row, set(record.entry_ids)


def _carried(email: str, paper: Entry, issue: IssueRow) -> Reason:
    if issue.status == PREVIEW:
        return Reason(email, "delivered", f"in the issue this preview builds (issue {issue.id})", issue.id)
    if issue.status == "sent":
        return Reason(email, "delivered", f"delivered in issue {issue.id} on {_day(issue.sent_at)}", issue.id)
    return Reason(email, "delivered", f"in issue {issue.id} (built on {_day(issue.built_at)}), pending delivery",
                  issue.id)


def explain(store: Store, config: Config, paper_text: str, *, subscriber: str | None = None,
            issue_id: str | None = None, planned: Mapping[str, tuple[IssueRow, set[str]]] | None = None
            ) -> tuple[Entry, Iterator[Reason]]:
    """The paper asked about, and a reason per subscriber (only `subscriber` when given); reads the
    store a batch of subscribers at a time. `planned`: per subscriber, an issue built in memory now
    (the workbench's preview), explained as the newest issue."""
    paper = find_paper(store, paper_text)
    roster = Roster(config, store)
    batches: Iterator[Sequence[Subscriber]]
    if subscriber is not None:
        who = roster.find(subscriber)
        if who is None:
            raise ConfigError(f"no subscriber '{subscriber}' in {config.path} or the store")
        batches = iter([[who]])
    elif issue_id is not None:
        row = store.issue(issue_id)
        owner = roster.find(row.subscriber) if row is not None else None
        if owner is None:
            raise ConfigError(f"no issue {issue_id} of a current subscriber")
        batches = iter([[owner]])
    else:
        batches = roster.subscriber_batches(BATCH)

    shared = Shared(paper, lambda since, until: store.entries(since, until))
    # one subscriber, an issue asked about or a preview: every issue read; many: two issues each
    full = subscriber is not None or issue_id is not None or planned is not None or paper.first_seen is None
    carrying: dict[str, list[IssueRow]] = {}
    if not full:
        for row in sorted(store.issue_heads(list(store.carriers([paper.id]))), key=lambda i: i.built_at):
            carrying.setdefault(row.subscriber, []).append(row)

    def histories(batch: Sequence[Subscriber]) -> dict[str, History]:
        emails = [s.email for s in batch]
        if not full:
            around = store.issues_around(emails, paper.first_seen)  # type: ignore[arg-type]
            return {s.email: history_around(s, paper, around.get(s.email), carrying.get(s.email, []))
                    for s in batch}
        issues = store.issue_heads_of(emails)
        carried = store.issue_entry_ids([i.id for rows in issues.values() for i in rows])
        for email, (row, ids) in (planned or {}).items():
            if email in issues or any(s.email == email for s in batch):
                issues.setdefault(email, []).append(row)
                carried[row.id] = ids
        return {s.email: history_of(s, paper, issues.get(s.email, []), carried, issue_id) for s in batch}

    def reasons() -> Iterator[Reason]:
        pages = iter(batches)
        while True:
            with gc_paused():  # thousands of small objects a batch, no cycles
                batch = next(pages, None)
                if batch is None:
                    return
                out = explained(batch)
            yield from out

    def explained(batch: Sequence[Subscriber]) -> list[Reason]:
        early: list[Reason | None] = [None] * len(batch)
        if not full:  # settle who needs no issue window before reading any ledger
            early = [_settled(paper, s, carrying.get(s.email, ()), shared) for s in batch]
        unsettled = [s for s, v in zip(batch, early) if v is None]
        found = histories(unsettled) if unsettled else {}
        states = store.states([s.email for s in unsettled]) if unsettled else {}
        verdicts = [v if v is not None else _verdict(paper, s, states.get(s.email), found[s.email], shared, not full)
                    for s, v in zip(batch, early)]
        places = iter(shared.places([v for v in verdicts if isinstance(v, _Rank)]))
        return [v if isinstance(v, Reason) else _ranked(v, next(places), shared) for v in verdicts]
    return paper, reasons()
