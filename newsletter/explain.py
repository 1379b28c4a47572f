"""`newsletter explain PAPER`: what happened to one paper for one subscriber (or each), and why.

Answered from the stored papers and the ledger, with the matcher the issues were built with
(`matching.EntryIndex`), never a second one. An issue's window is what the builder used: papers
first seen after the subscriber's previous issue was built (for a first issue, one schedule period
before its slot) up to this issue's build time, less what they had received before. The reasons,
in the order they are looked for:

    delivered    in issue X, sent on D (or pending delivery)
    state        no issue covers the paper: the subscriber was paused / unsubscribed / bounced
    window       first seen outside every issue's window (before the first, or after the last)
    no_match     no keyword query matches it
    excluded     a keyword query matches, an exclude removes it: the exact term and field
    upvotes      below the subscriber's min_upvotes
    held_back    delivered before, in issue X: a paper is sent once
    ranked_out   matched but ranked N with a cap of M (and the score of the last one that made it)
    cut          within the cap, but the size budget left it out of the email
    undelivered  in the issue, which failed or expired

`explain_for` is pure; `explain` reads the store in bulk (a batch of subscribers at a time).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from newsletter.entries import arxiv_id
from newsletter.errors import ConfigError
from newsletter.schedule import Schedule
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Entry, Subscriber
from newsletter.roster import Roster
from newsletter.standing import Standing, standing
from newsletter.store import IssueRow, NewIssue, StateRow, Store

BATCH = 500


@dataclass(frozen=True)
class Reason:
    """What happened to a paper for one subscriber: a code (see the module) and the sentence."""

    subscriber: str
    code: str
    sentence: str
    issue: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"subscriber": self.subscriber, "reason": self.code, "sentence": self.sentence, "issue": self.issue}


def find_paper(entries: Sequence[Entry], text: str) -> Entry:
    """An entry by id, arXiv id (or an arXiv / Hugging Face URL), or a fragment of its title."""
    text = text.strip()
    by_id = {e.id: e for e in entries}
    if text in by_id:
        return by_id[text]
    aid = arxiv_id(text)
    if aid and aid in by_id:
        return by_id[aid]
    if aid and ("/" in text or text.startswith(aid)):
        raise ConfigError(f"no stored paper {aid}: it never came from a source (newsletter entries lists them)")
    words = text.casefold()
    found = [e for e in entries if words and words in " ".join(e.title.split()).casefold()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"no stored paper matches '{text}' (an arXiv id, a paper URL, an entry id or "
                           "words of its title)")
    shown = "; ".join(f"{e.id}: {e.title[:60]}" for e in found[:5])
    raise ConfigError(f"'{text}' matches {len(found)} stored papers, e.g. {shown}: give its id")


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


class Shared:
    """What explaining one paper to many subscribers shares: the paper's own index, parsed profiles,
    each window's index and each (window, profile)'s ranking."""

    def __init__(self, paper: Entry, entries: Sequence[Entry]) -> None:
        self.alone = EntryIndex([paper])
        self.entries = entries
        self._profiles: dict[tuple[object, ...], Profile] = {}
        self._windows: dict[tuple[datetime, datetime], tuple[EntryIndex, dict[str, int]]] = {}
        self._ranked: dict[tuple[object, ...], list[tuple[Entry, float]]] = {}
        self._carried: dict[str, set[str]] = {}  # issue id -> the papers asked about so far that it carried
        self._asked: set[str] = set()

    def carried(self, store: Store, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Which issues (of anyone) carried which of these papers, each paper read from the store once."""
        new = [i for i in entry_ids if i not in self._asked]
        if new:
            for issue, ids in store.carriers(new).items():
                self._carried.setdefault(issue, set()).update(ids)
            self._asked.update(new)
        return self._carried

    def window_ids(self, batch: Sequence[Subscriber], issues: Mapping[str, Sequence[IssueRow]],
                   issue_id: str | None) -> list[str]:
        """The ids of the paper and of every stored paper first seen in the windows of the issues the
        paper could be in for these subscribers (the issue asked about, or the first one built after
        it arrived): all `explain_for` looks up in what issues carried."""
        seen = self.alone.entries[0].first_seen
        start: datetime | None = None
        end: datetime | None = None
        for sub in batch:
            rows = sorted(issues.get(sub.email, ()), key=lambda i: i.built_at)
            k = next((k for k, i in enumerate(rows)
                      if (i.id == issue_id if issue_id else seen is None or i.built_at >= seen)), None)
            if k is not None:
                since, until = _since(sub, rows, k), rows[k].built_at
                start = since if start is None or since < start else start
                end = until if end is None or until > end else end
        ids = {self.alone.entries[0].id}
        if start is not None and end is not None:
            ids.update(e.id for e in self.entries if e.first_seen is not None and start < e.first_seen <= end)
        return sorted(ids)

    def profile(self, sub: Subscriber) -> Profile:
        key = (sub.keywords, sub.exclude, sub.min_upvotes)
        found = self._profiles.get(key)
        if found is None:
            found = self._profiles[key] = Profile.from_strings(sub.keywords, sub.exclude, sub.min_upvotes)
        return found

    def ranked(self, sub: Subscriber, since: datetime, until: datetime, before: set[str]) -> list[tuple[Entry, float]]:
        """The window's papers the profile selects (less those delivered before), best first, with scores."""
        window = self._windows.get((since, until))
        if window is None:
            papers = [e for e in self.entries if e.first_seen is not None and since < e.first_seen <= until]
            window = self._windows[(since, until)] = (EntryIndex(papers), {e.id: i for i, e in enumerate(papers)})
        index, bit = window
        gone = before & bit.keys()
        key = (since, until, sub.trending_only, sub.keywords, sub.exclude, sub.min_upvotes, tuple(sorted(gone)))
        found = self._ranked.get(key)
        if found is None:
            candidates = index.all
            for entry_id in gone:
                candidates &= ~(1 << bit[entry_id])
            if sub.trending_only:
                chosen = [e for i, e in enumerate(index.entries) if candidates >> i & 1]
                found = [(e, float(e.upvotes or 0)) for e in sorted(chosen, key=lambda e: (-(e.upvotes or 0), e.id))]
            else:
                found = [(m.entry, m.score) for m in index.select(self.profile(sub), candidates)]
            self._ranked[key] = found
        return found


def explain_for(paper: Entry, sub: Subscriber, state: StateRow | None, issues: Sequence[IssueRow],
                carried: Mapping[str, set[str]], entries: Sequence[Entry] | Shared, *, issue_id: str | None = None
                ) -> Reason:
    """Why `paper` did or did not reach `sub`: their issues (oldest first) with the papers each
    carried, their state, and the stored papers (for the windows and the ranking; a `Shared` when
    many subscribers are explained the same paper)."""
    shared = entries if isinstance(entries, Shared) else Shared(paper, entries)
    email = sub.email
    now_standing = standing(sub, state)
    issues = sorted(issues, key=lambda i: i.built_at)
    if issue_id is not None:
        ks = [k for k, i in enumerate(issues) if i.id == issue_id]
        if not ks:
            raise ConfigError(f"{email} has no issue {issue_id}")
        k = ks[0]
    else:
        for i in issues:
            if paper.id in carried.get(i.id, ()) and i.status in ("sent", "pending", PREVIEW):
                return _carried(email, paper, i)
        seen = paper.first_seen
        later = [k for k, i in enumerate(issues) if seen is None or i.built_at >= seen]
        if not later:
            then = _state_then(sub, state, now_standing)
            if then:
                return Reason(email, "state", f"no issue since the paper arrived ({_day(seen)}): {then}")
            last = f" (the last was built on {_day(issues[-1].built_at)})" if issues else ""
            return Reason(email, "window", f"first seen on {_day(seen)}, after every issue{last}: the next "
                                           "issue will consider it")
        k = later[0]
    target = issues[k]
    since, until = _since(sub, issues, k), target.built_at
    if paper.id in carried.get(target.id, ()):
        return _carried(email, paper, target)
    before = set().union(*(carried.get(i.id, set()) for i in issues[:k] if i.status in ("sent", "pending")))
    if paper.id in before:
        prior = next(i for i in issues[:k] if paper.id in carried.get(i.id, ()))
        return Reason(email, "held_back", f"held back from issue {target.id}: already delivered in issue {prior.id} "
                                          f"on {_day(prior.sent_at or prior.built_at)} (a paper is sent once)", target.id)
    if paper.first_seen is None or not since < paper.first_seen <= until:
        return Reason(email, "window", f"not in any source window of {email}: first seen on {_day(paper.first_seen)}, "
                                       f"issue {target.id} covered {_day(since)} to {_day(until)}", target.id)
    profile = shared.profile(sub)
    alone = shared.alone
    if sub.trending_only:
        if paper.upvotes is None:
            return Reason(email, "no_match", "a trending-only profile gets papers with a community signal "
                                             "(upvotes); this one has none", target.id)
    else:
        matched = [q for q in profile.keywords if alone.query_mask(q)]
        if not matched:
            return Reason(email, "no_match", f"no keyword query of {email} matches it "
                                             f"({', '.join(sub.keywords)})", target.id)
        for q in profile.exclude:
            if alone.query_mask(q):
                hit = alone.hits(q, 0)
                where = f': "{hit[0].term.split(":", 1)[-1]}" in the {hit[0].field}' if hit else ""
                return Reason(email, "excluded", f"matched {matched[0].text} but excluded by NOT {q.text}{where}",
                              target.id)
    if (paper.upvotes or 0) < sub.min_upvotes:
        return Reason(email, "upvotes", f"{paper.upvotes or 0} upvotes, below min_upvotes {sub.min_upvotes}",
                      target.id)
    selected = shared.ranked(sub, since, until, before)
    rank = next(n for n, (e, _) in enumerate(selected, 1) if e.id == paper.id)
    ranked = [e for e, _ in selected]
    scores = {e.id: score for e, score in selected}
    cap = sub.max_entries
    if rank > cap:
        edge = ranked[cap - 1]
        return Reason(email, "ranked_out", f"matched but ranked {_ordinal(rank)} of {len(ranked)} in issue {target.id} "
                                           f"with a cap of {cap}: the last paper that made it, \u201c{edge.title}\u201d, "
                                           f"scored {scores[edge.id]:g} (this one {scores[paper.id]:g})", target.id)
    if target.dropped:
        return Reason(email, "cut", f"ranked {_ordinal(rank)} of {len(ranked)}, within the cap of {cap}, but the size "
                                    f"budget cut issue {target.id}: {target.entry_count} papers shown, "
                                    f"{target.dropped} left out", target.id)
    if target.status in ("failed", "expired"):
        return Reason(email, "undelivered", f"in issue {target.id}, which was never delivered ({target.status}"
                                            f"{': ' + target.last_error if target.last_error else ''})", target.id)
    return Reason(email, "ranked_out", f"not in issue {target.id} (built on {_day(target.built_at)}, {target.status})",
                  target.id)


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
    entries = store.entries()
    paper = find_paper(entries, paper_text)
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
        batches = ([m.subscriber for m in members] for members in roster.batches(BATCH))

    shared = Shared(paper, entries)
    def reasons() -> Iterator[Reason]:
        for batch in batches:
            emails = [s.email for s in batch]
            issues = store.issue_heads_of(emails)
            # only the papers that can matter: this one, and those of the windows it could be in
            carried = shared.carried(store, shared.window_ids(batch, issues, issue_id))
            for email, (row, ids) in (planned or {}).items():
                if email in emails:
                    issues.setdefault(email, []).append(row)
                    carried[row.id] = ids
            states = store.states(emails)
            for sub in batch:
                yield explain_for(paper, sub, states.get(sub.email), issues.get(sub.email, []), carried, shared,
                                  issue_id=issue_id)
    return paper, reasons()
