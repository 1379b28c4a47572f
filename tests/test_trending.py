"""Trending subscriptions (issue 11, item 1) on the bundled sample: subscribers.example.yaml's sources."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import run
from newsletter import ingest, pipeline, trending
from newsletter.config import load
from newsletter.models import Config, Entry, Subscriber
from newsletter.store import Store

EXAMPLE = Path(__file__).parent.parent / "subscribers.example.yaml"
AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _sample(tmp_path: Path) -> tuple[Config, Store]:
    config = load(EXAMPLE)
    store = Store(tmp_path / "state.sqlite3")
    reports = ingest.ingest_sources(store, config, AT)
    assert all(r.error is None for r in reports), reports
    return config, store


def _with(config: Config, *subs: Subscriber) -> Config:
    return replace(config, subscribers=subs)


def _subscriber(email: str, keywords: tuple[str, ...] = (), **kw: object) -> Subscriber:
    values: dict[str, object] = dict(name=None, keywords=keywords, exclude=(), schedule="0 7 * * *",
                                     timezone="UTC", max_entries=5, min_upvotes=0, send_empty=False)
    values.update(kw)
    return Subscriber(email=email, **values)  # type: ignore[arg-type]


def _documented_order(entries: list[Entry]) -> list[Entry]:
    """The README's rule, written out again: signalled papers only; upvotes, comments, newer, id."""
    signalled = [e for e in entries if e.upvotes is not None]
    return sorted(signalled, key=lambda e: (-e.upvotes, -(e.comments or 0),  # type: ignore[operator]
                                            -(e.published or date.min).toordinal(), e.id))


def test_a_trending_only_subscriber_gets_the_top_max_entries(tmp_path: Path) -> None:
    config, store = _sample(tmp_path)
    entries = store.entries()
    unsignalled = [e for e in entries if e.upvotes is None]
    assert unsignalled, "the sample should hold papers without a community signal"
    sub = _subscriber("trend@example.org", max_entries=7)
    built, _ = pipeline.plan(_with(config, sub), store, AT, secret="s")
    (issue,) = [b.issue for b in built]
    expected = _documented_order(entries)[:7]
    assert [m.entry.id for m in issue.matches] == [e.id for e in expected]
    first = expected[0]
    assert issue.matches[0].why.startswith(f"▲ {first.upvotes} upvotes") and issue.matches[0].why.endswith("#1 today")
    assert issue.matches[1].why.endswith("#2 today")
    assert not {m.entry.id for m in issue.matches} & {e.id for e in unsignalled}
    assert built[0].sends
    store.close()


def test_min_upvotes_and_excludes_are_honoured(tmp_path: Path) -> None:
    config, store = _sample(tmp_path)
    ranked = _documented_order(store.entries())
    floor = ranked[3].upvotes
    assert floor is not None and ranked[4].upvotes is not None and ranked[4].upvotes < floor
    above = [e for e in ranked if (e.upvotes or 0) >= floor]
    others = {w for e in above[1:] for w in e.title.lower().split()}
    excluded_word = next(w for w in ranked[0].title.lower().split() if w.isalpha() and w not in others)
    sub = _subscriber("trend@example.org", max_entries=10, min_upvotes=floor,
                      exclude=(f'title:"{excluded_word}"',))
    built, _ = pipeline.plan(_with(config, sub), store, AT, secret="s")
    got = [m.entry.id for m in built[0].issue.matches]
    assert got == [e.id for e in above[1:]]
    # ranks stay the window's: the first paper shown is #2 when #1 was excluded
    assert built[0].issue.matches[0].why.endswith("#2 today")
    store.close()


def test_trending_n_adds_exactly_n_papers_that_did_not_match(tmp_path: Path) -> None:
    config, store = _sample(tmp_path)
    sub = _subscriber("ada@example.org", keywords=("model",), max_entries=3, trending=3)
    built, _ = pipeline.plan(_with(config, sub), store, AT, secret="s")
    issue = built[0].issue
    assert len(issue.matches) == 3 and len(issue.trending) == 3
    matched_any = {e.id for e in store.entries()
                   if "model" in (e.title + " " + e.abstract).lower()}
    assert not {m.entry.id for m in issue.trending} & matched_any
    order = [e.id for e in _documented_order(store.entries()) if e.id not in matched_any]
    assert [m.entry.id for m in issue.trending] == order[:3]
    assert all(m.why.startswith("▲ ") for m in issue.trending)
    # the trending papers count as delivered: the next issue does not carry them again
    record = built[0].to_record()
    assert set(record.entry_ids) >= {m.entry.id for m in issue.trending}
    store.close()


def test_no_trending_section_without_the_setting(tmp_path: Path) -> None:
    config, store = _sample(tmp_path)
    sub = _subscriber("ada@example.org", keywords=("model",), max_entries=3)
    built, _ = pipeline.plan(_with(config, sub), store, AT, secret="s")
    assert built[0].issue.trending == () and len(built[0].issue.matches) == 3
    store.close()


def test_period_and_reason_wording() -> None:
    assert trending.period_of(AT - timedelta(days=1), AT) == "today"
    assert trending.period_of(AT - timedelta(days=7), AT) == "this week"
    assert trending.period_of(AT - timedelta(days=30), AT) == "since 2026-10-28"
    e = Entry(id="1", title="T", upvotes=118)
    assert trending.reason(e, 2, "today") == "▲ 118 upvotes, #2 today"
    assert trending.reason(replace(e, upvotes=1, comments=1), 1, "this week") == "▲ 1 upvote, 1 comment, #1 this week"


def test_match_trending_shows_what_a_trending_only_subscriber_gets(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.sqlite3"
    config, store = _sample(tmp_path)
    expected = [e.id for e in _documented_order(store.entries())[:4]]
    store.close()
    assert run("--file", str(EXAMPLE), "--state", str(state), "match", "--trending", "--limit", "4", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in shown] == expected
    assert shown[0]["reasons"] == [] and shown[0]["why"].startswith("▲ ")
    assert config.subscribers  # the example's keyword subscribers are untouched


def test_the_examples_trending_only_subscriber_and_trending_section(tmp_path: Path) -> None:
    """subscribers.example.yaml as shipped: Linus (no keywords) and Alan (`trending: 3`)."""
    config, store = _sample(tmp_path)
    linus, alan = config.subscriber("linus@example.org"), config.subscriber("alan@example.org")
    assert linus is not None and linus.trending_only and not linus.updates and linus.min_upvotes == 2
    assert alan is not None and alan.trending == 3 and alan.updates
    built, _ = pipeline.plan(config, store, AT.replace(day=28, hour=7), secret="s", only=["linus@example.org"])
    expected = [e.id for e in _documented_order(store.entries()) if (e.upvotes or 0) >= 2][:linus.max_entries]
    assert [m.entry.id for m in built[0].issue.matches] == expected
    store.close()


def _titles_in(text: str, titles: list[str]) -> list[int]:
    return [text.find(t) for t in titles]


def test_the_trending_section_in_html_and_text(tmp_path: Path) -> None:
    import html as htmllib

    from newsletter.tex import readable

    config, store = _sample(tmp_path)
    sub = _subscriber("ada@example.org", keywords=("model",), max_entries=3, trending=3)
    (built,) = pipeline.plan(_with(config, sub), store, AT, secret="s")[0]
    rendered = built.rendered
    assert rendered is not None
    import re

    page = " ".join(htmllib.unescape(re.sub(r"<[^>]+>", "", rendered.html)).split())
    text = " ".join(rendered.text.replace("*", "").split())
    matched = [" ".join(readable(m.entry.title).split()) for m in built.issue.matches]
    trend = [" ".join(readable(m.entry.title).split()) for m in built.issue.trending]
    for part in (page, text):
        assert part.count("Trending") == 1 and "Papers outside your keywords that readers upvoted most." in part
        heading = part.index("Trending")
        assert all(0 <= i < heading for i in _titles_in(part, [t[:40] for t in matched]))
        assert all(i > heading for i in _titles_in(part, [t[:40] for t in trend]))
        for m in built.issue.trending:
            assert f"Why it is here: {m.why}" in part
    assert "\nTrending\n========\n" in rendered.text
    assert "\n4. " in rendered.text and "\n6. " in rendered.text and "\n7. " not in rendered.text
    store.close()


def test_a_trending_only_issue_reads_as_one(tmp_path: Path) -> None:
    config, store = _sample(tmp_path)
    sub = _subscriber("t@example.org", max_entries=3)
    (built,) = pipeline.plan(_with(config, sub), store, AT, secret="s")[0]
    assert built.rendered is not None
    assert built.rendered.preheader.startswith("The 3 papers readers upvoted most. Top: ")
    assert "Your profile: the papers readers upvote most (no keywords)" in " ".join(built.rendered.text.split())
    assert "Trending\n===" not in built.rendered.text  # its papers are the issue, not a section
    assert built.rendered.text.count("Why it is here: ▲ ") == 3
    store.close()


def test_assembled_output_equals_the_whole_document_with_sections(tmp_path: Path) -> None:
    from newsletter.models import Update
    from newsletter.rendering import SlotRenderer, compile_whole

    config, store = _sample(tmp_path)
    sub = _subscriber("ada@example.org", keywords=("model",), max_entries=2, trending=2)
    (built,) = pipeline.plan(_with(config, sub), store, AT, secret="s")[0]
    got = store.entries()[0]
    issue = replace(built.issue, updates=(Update(got, "code", "code: https://github.com/a/b", AT),))
    renderer = SlotRenderer(config.settings)
    outputs = [renderer.render(issue, unsubscribe_url="https://u/x", change_url="mailto:c@example.org")
               for _ in range(3)]  # the third is filled from a plan
    html, text = compile_whole(renderer.env, renderer.context(issue, unsubscribe_url="https://u/x",
                                                              change_url="mailto:c@example.org"),
                               renderer.cards(issue))
    assert all((o.html, o.text) == (html, text) for o in outputs)
    assert "Updates" in text and "What changed: code: https://github.com/a/b" in " ".join(text.split())
    store.close()
