"""The daily-papers API by date: which days to ask for, and asking within the server's limits.

A source whose URL holds `{date}` (`https://huggingface.co/api/daily_papers?date={date}`) is read one
day at a time, page by page (`p=0, 1, ...`, `limit` from the URL, else 100, the API's maximum; a short
page is the last). A day is settled once it was fetched on a later day (its upvotes have had a day to
settle); every run asks again, conditionally (the day's ETag), for each unsettled day of the catch-up
window: today, yesterday, and every day missed while nothing ran. A day answered with `[]` has no list
(weekends, holidays): that is recorded, not an error. HTTP 429 is honoured: a short Retry-After is
waited out, a long one ends the run's fetching until then. A run makes at most `request_budget`
requests; days it could not reach are asked for first in the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from newsletter.errors import RateLimited, SourceError
from newsletter.models import SourceConfig
from newsletter.records import Day, SourceDays
from newsletter.sources.fetch import Fetched, _json_array, fetch_url

PLACEHOLDER = "{date}"
LIMIT = 100  # the API refuses more per page
MAX_PAGES = 20  # per day: 2,000 papers, far more than any day has had
MAX_WAIT = 60.0  # seconds: a longer Retry-After ends this run's fetching instead of blocking it


def by_date(source: SourceConfig) -> bool:
    return source.type == "hf-daily" and source.url is not None and PLACEHOLDER in source.url


def page_url(template: str, day: date, page: int) -> str:
    """The URL of one page of one day: the template's own query (its `limit`, say) kept."""
    parts = urlsplit(template.replace(PLACEHOLDER, day.isoformat()))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "p"]
    if not any(k == "limit" for k, _ in query):
        query.append(("limit", str(LIMIT)))
    query.append(("p", str(page)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe=":,"), parts.fragment))


def page_limit(template: str) -> int:
    for k, v in parse_qsl(urlsplit(template).query):
        if k == "limit" and v.isdigit() and int(v) > 0:
            return int(v)
    return LIMIT


def settled(day: date, record: Day | None) -> bool:
    """Fetched (with a list or without) on a later day than its own."""
    if record is None or record.state == "failed" or not record.at:
        return False
    return datetime.fromisoformat(record.at).date() > day


def days_to_fetch(today: date, record: SourceDays, window: int) -> list[date]:
    """Oldest first: the unsettled days of the window. On the very first run only today and
    yesterday (a new source does not start with a week of old papers); after that, every day
    since the first one fetched, up to `window` days back."""
    start = today - timedelta(days=max(1, window) - 1)
    if not record.days:
        start = max(start, today - timedelta(days=1))
    else:
        start = max(start, min(date.fromisoformat(d) for d in record.days))
    span = (today - start).days
    days = [start + timedelta(days=k) for k in range(span + 1)]
    return [d for d in days if not settled(d, record.day(d))]


@dataclass
class DayResult:
    day: date
    state: str  # ok | empty | not_modified | failed
    items: list[object] = field(default_factory=list)
    etag: str | None = None
    error: str | None = None


@dataclass
class CatchUp:
    """What one run fetched: each day's result, the requests made, and why it stopped early."""

    days: list[DayResult] = field(default_factory=list)
    requests: int = 0
    stopped: str | None = None  # rate limited / budget used: the days left wait for the next run
    retry_after: float | None = None  # seconds, when the server said
    left: list[date] = field(default_factory=list)


class _Stop(Exception):
    """Ends the run's fetching (budget used, or a rate limit too long to wait out)."""


class Fetcher:
    """Fetches days of one source within its request budget and the server's rate limits."""

    def __init__(self, source: SourceConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        assert source.url is not None
        self.source = source
        self.template = source.url
        self.limit = page_limit(source.url)
        self.sleep = sleep
        self.result = CatchUp()
        self._window_used = False  # the server said no request is left until its window resets

    def run(self, days: list[date], record: SourceDays) -> CatchUp:
        for n, day in enumerate(days):
            try:
                self.result.days.append(self._day(day, record.day(day)))
            except _Stop:
                self.result.left = days[n:]
                break
        return self.result

    def _get(self, url: str, etag: str | None, deadline: float) -> Fetched:
        """One request, counted against the budget; a short 429 is waited out and asked again."""
        while True:
            if self._window_used:
                raise _Stop
            if self.result.requests >= self.source.request_budget:
                self.result.stopped = f"the request budget of {self.source.request_budget} per run is used"
                raise _Stop
            self.result.requests += 1
            try:
                fetched = fetch_url(url, self.source.name, etag=etag, max_bytes=self.source.max_bytes,
                                    timeout=self.source.timeout, deadline=deadline)
            except RateLimited as exc:
                wait = exc.retry_after
                if wait is None or wait > MAX_WAIT or time.monotonic() + wait >= deadline:
                    self.result.stopped = str(exc)
                    self.result.retry_after = wait
                    raise _Stop from exc
                self.sleep(wait)
                continue
            if fetched.requests_left == 0 and fetched.reset_after is not None:
                # the server says this was the last request of its window: wait or stop before the next
                if fetched.reset_after > MAX_WAIT:
                    self.result.stopped = (f"source '{self.source.name}': the server's rate limit is reached "
                                           f"(resets in {fetched.reset_after:g} s)")
                    self.result.retry_after = fetched.reset_after
                    self._window_used = True
                else:
                    self.sleep(fetched.reset_after)
            return fetched

    def _day(self, day: date, before: Day | None) -> DayResult:
        """One day's pages; a _Stop part-way leaves the whole day for the next run."""
        deadline = time.monotonic() + self.source.timeout  # each day's pages share one deadline
        items: list[object] = []
        etag: str | None = None
        try:
            for page in range(MAX_PAGES):
                # only the first page is conditional: when it has not changed, the day has not
                known = before.etag if page == 0 and before is not None and before.state in ("ok", "empty") else None
                fetched = self._get(page_url(self.template, day, page), known, deadline)
                if fetched.data is None:
                    return DayResult(day, "not_modified", etag=known)
                if page == 0:
                    etag = fetched.etag
                more = _json_array(fetched.data, self.source.name)
                items.extend(more)
                if len(more) < self.limit:
                    break
        except SourceError as exc:
            return DayResult(day, "failed", error=str(exc))
        return DayResult(day, "ok" if items else "empty", items, etag)
