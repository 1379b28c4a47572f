"""hf-daily by date (issue 11, item 2) against a loopback emulation of the daily-papers API: catch-up
after missed days, pages, an empty weekend, a 429 with Retry-After, the request budget, and a second
run that is conditional and adds nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from conftest import DATA, Recorder, run, write_config
from daily_api import DailyApi
from newsletter import ingest, records
from newsletter.config import load
from newsletter.sources import daily
from newsletter.store import Store

ITEMS = (json.loads((DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes())
         + json.loads((DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes()))


def _api(today: date) -> DailyApi:
    """Six days: T-5 (6 papers), T-4 (8), T-3 and T-2 with no list, T-1 (12: three pages of 5), T (9)."""
    t = lambda k: today - timedelta(days=k)  # noqa: E731
    items = json.loads(json.dumps(ITEMS))  # a test may change them
    return DailyApi(today, {t(5): items[:6], t(4): items[6:14], t(1): items[14:26], t(0): items[26:35]})


def _project(tmp_path: Path, httpserver: HTTPServer, port: int = 2525) -> Path:
    url = httpserver.url_for("/api/daily_papers") + "?date={date}&limit=5"
    sources = f"  sources:\n    - name: hf\n      type: hf-daily\n      url: '{url}'\n"
    subs = "  - email: ada@example.org\n    keywords: ['model OR learning']\n    max_entries: 50\n"
    return write_config(tmp_path, port=port, sources=sources, subscribers=subs)


def test_page_urls_keep_the_template_query() -> None:
    template = "https://huggingface.co/api/daily_papers?date={date}&limit=5"
    assert daily.page_url(template, date(2026, 11, 29), 2) == \
        "https://huggingface.co/api/daily_papers?date=2026-11-29&limit=5&p=2"
    assert daily.page_url("https://h/api/daily_papers?date={date}", date(2026, 1, 2), 0) == \
        "https://h/api/daily_papers?date=2026-01-02&limit=100&p=0"


def test_days_to_fetch_first_run_catch_up_and_settling() -> None:
    today = date(2026, 12, 1)
    assert daily.days_to_fetch(today, records.SourceDays(), 7) == [date(2026, 11, 30), today]
    at = lambda d: datetime.combine(d, time(9), timezone.utc).isoformat()  # noqa: E731
    seen = records.SourceDays({"2026-11-26": records.Day("ok", 6, at=at(date(2026, 11, 27))),
                               "2026-11-27": records.Day("ok", 8, at=at(date(2026, 11, 27)))})
    # 11-26 was fetched the next day: settled; 11-27 only on its own day: asked again
    assert daily.days_to_fetch(today, seen, 7) == [date(2026, 11, 27) + timedelta(days=k) for k in range(5)]
    # a window of 3 days never reaches further back
    assert daily.days_to_fetch(today, seen, 3) == [date(2026, 11, 29), date(2026, 11, 30), today]


def test_run_once_after_three_missed_days_catches_up_once_within_budget(
        httpserver: HTTPServer, tmp_path: Path, smtp_server: tuple[Recorder, int],
        capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(timezone.utc)
    today = now.date()
    api = _api(today)
    httpserver.expect_request("/api/daily_papers").respond_with_handler(api)
    project = _project(tmp_path, httpserver, smtp_server[1])
    state = tmp_path / ".newsletter" / "state.sqlite3"
    # the last run, four days ago: it fetched T-5 and T-4
    with Store(state) as store:
        (first,) = ingest.ingest_sources(store, load(project), now - timedelta(days=4))
    assert (first.new, first.error) == (14, None)
    assert api.fetched() == [(str(today - timedelta(days=5)), 0), (str(today - timedelta(days=5)), 1),
                             (str(today - timedelta(days=4)), 0), (str(today - timedelta(days=4)), 1)]
    # meanwhile a paper of T-4 gained upvotes; T-1's second page will answer 429 once
    api.days[today - timedelta(days=4)][0]["paper"]["upvotes"] += 40
    api.throttle.add((str(today - timedelta(days=1)), 1))
    api.log.clear()

    assert run("--file", str(project), "run", "--once") == 0
    days = [str(today - timedelta(days=k)) for k in (4, 3, 2, 1, 0)]
    assert api.fetched() == [(days[0], 0), (days[0], 1), (days[1], 0), (days[2], 0),
                             (days[3], 0), (days[3], 1), (days[3], 1), (days[3], 2), (days[4], 0), (days[4], 1)]
    assert api.fetched(429) == [(days[3], 1)]
    assert len(api.log) <= load(project).settings.sources[0].request_budget == 60
    with Store(state) as store:
        stored = store.entries()
        assert sorted(e.id for e in stored) == sorted(i["paper"]["id"] for i in ITEMS)
        bumped = next(e for e in stored if e.id == ITEMS[6]["paper"]["id"])
        assert bumped.upvotes == ITEMS[6]["paper"]["upvotes"] + 40
        assert bumped.first_seen is not None and bumped.first_seen < now - timedelta(days=3)  # updated, not new
        record = records.load_days(store, "hf")
        assert {d: record.days[d].state for d in days} == {
            days[0]: "ok", days[1]: "empty", days[2]: "empty", days[3]: "ok", days[4]: "ok"}
        assert record.days[days[3]].papers == 12

    # a second run: only today is unsettled; asked conditionally, it adds nothing
    api.log.clear()
    assert run("--file", str(project), "run", "--once") == 0
    assert api.log == [(days[4], 0, 304)]
    with Store(state) as store:
        assert store.entry_count() == len(ITEMS)


def test_a_used_budget_leaves_the_rest_for_the_next_run_and_counts_each_paper_new_once(
        httpserver: HTTPServer, tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    api = _api(now.date())
    httpserver.expect_request("/api/daily_papers").respond_with_handler(api)
    config = load(_project(tmp_path, httpserver))
    small = replace(config, settings=replace(config.settings, sources=(
        replace(config.settings.sources[0], request_budget=4),)))
    with Store(tmp_path / "s.sqlite3") as store:
        ingest.ingest_sources(store, small, now - timedelta(days=4))  # T-5, T-4: 4 requests
        new = 14
        for hour in range(1, 6):
            (r,) = ingest.ingest_sources(store, small, now + timedelta(hours=hour))
            assert r.requests <= 4 and r.error is None
            new += r.new
        assert new == store.entry_count() == len(ITEMS)
        assert records.load_days(store, "hf").note is None  # caught up


def test_a_long_retry_after_stops_fetching_until_then(httpserver: HTTPServer, tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    api = _api(now.date())
    api.retry_after = "3600"
    api.throttle.add((str(now.date()), 0))
    httpserver.expect_request("/api/daily_papers").respond_with_handler(api)
    config = load(_project(tmp_path, httpserver))
    with Store(tmp_path / "s.sqlite3") as store:
        (r,) = ingest.ingest_sources(store, config, now)
        assert r.new == 12 and r.error is None  # yesterday's list; today's waits
        assert r.notes == (f"source 'hf': {httpserver.url_for('/api/daily_papers')}?date={now.date()}&limit=5&p=0 "
                           f"answered HTTP 429 Too Many Requests (retry after 3600 s); 1 day ({now.date()}) "
                           "left for the next run",)
        api.log.clear()
        (again,) = ingest.ingest_sources(store, config, now + timedelta(minutes=30))
        assert api.log == [] and again.notes == ("rate limited: not asking before 2026-12-01T10:00:00+00:00",)
        (later,) = ingest.ingest_sources(store, config, now + timedelta(hours=1, minutes=1))
        assert later.new == 9 and store.entry_count() == 21
