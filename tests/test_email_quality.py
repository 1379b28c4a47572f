"""What independent tools checked in the emails (issue 13): exact highlights, one set of links in
both parts, no hidden preheader, dark separators, a readable text part, units kept together, the
message catalogue, the size budget, and render-once-assemble-many giving the same bytes."""

from __future__ import annotations

import json
import pickle
import random
import re
from dataclasses import replace
from datetime import date, datetime, timezone
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DATA, LISTING
from newsletter import message as messagelib
from newsletter import rendering
from newsletter.assembly import SharedText
from newsletter.plans import Assembled
from newsletter.config import loads
from newsletter.matching import EntryIndex, Profile
from newsletter.links import Links as WebLinks
from newsletter.models import Config, Entry, Issue, Links, Subscriber
from newsletter.rendering import (HTML_BUDGET, SlotRenderer, compile_whole, default_templates, fit, render,
                                  environment)
from newsletter.sources import hf_daily, listing
from newsletter.text import stem, words

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)


def config(newsletter: dict[str, Any] | None = None, subscriber: dict[str, Any] | None = None) -> Config:
    data = {
        "newsletter": {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                       "base_url": "https://digest.example.org", **(newsletter or {})},
        "subscribers": [{"email": "ada@example.org", "name": "Ada", "keywords": ['"language model"'],
                         "max_entries": 40, **(subscriber or {})}],
    }
    data["newsletter"] = {k: v for k, v in data["newsletter"].items() if v is not None}  # None: not set
    return loads(yaml.safe_dump(data, allow_unicode=True), Path("subscribers.yaml"), {})


def issue_of(cfg: Config, entries: list[Entry], sub: Subscriber | None = None, issue_id: str = "i1") -> Issue:
    sub = sub or cfg.subscribers[0]
    profile = Profile.from_strings(sub.keywords, sub.exclude, sub.min_upvotes)
    matches = EntryIndex(entries).select(profile, limit=sub.max_entries)
    return Issue(id=issue_id, subscriber=sub, slot=NOW, built_at=NOW, matches=tuple(matches))


def rendered(cfg: Config, entries: list[Entry], **kw: Any):  # noqa: ANN201
    links = messagelib.unsubscribe_links(cfg.settings, cfg.subscribers[0].email, "s3cret")
    return render(issue_of(cfg, entries), cfg.settings, unsubscribe_url=links.visible,
                  change_url=messagelib.change_profile_url(cfg.settings, cfg.subscribers[0].email), **kw)


def body(html: str) -> str:
    return html.split("<body", 1)[1].split(">", 1)[1]


def hits(html: str) -> list[str]:
    return [unescape(x) for x in re.findall(r'<strong class="hit">(.*?)</strong>', html)]


def hf_entries() -> list[Entry]:
    return hf_daily.parse((DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes(), source="hf")


def listing_entries() -> list[Entry]:
    return listing.parse(LISTING.read_bytes(), source="l", today=date(2026, 11, 27))


# --- 3. highlights ----------------------------------------------------------------------------

def test_a_phrase_is_highlighted_only_where_the_whole_phrase_occurs() -> None:
    e = Entry(id="x", title="Language models for modeling languages",
              abstract="A language model helps. Models, modeling and languages alone are not the phrase; "
                       "nor is model language. Large language-models are.")
    r = rendered(config(), [e])
    assert hits(r.html) == ["Language models", "language model", "language-models"]
    assert re.findall(r"\*([^*]+)\*", r.text.split("\n-- \n")[0]) == ["Language models", "language model", "language-models"]


def test_a_scoped_term_is_highlighted_only_in_its_field() -> None:
    e = Entry(id="x", title="Diffusion for images", abstract="We study diffusion and diffusion models.")
    r = rendered(config(subscriber={"keywords": ["title:diffusion"]}), [e])
    assert hits(r.html) == ["Diffusion"]
    assert "Matched title:diffusion in title" in r.text
    assert "study diffusion and diffusion" in r.text  # unmarked in the abstract


def test_prefix_and_author_terms_mark_their_own_occurrences() -> None:
    e = Entry(id="x", title="Distillation of distilled students", abstract="We distill. Distance is not it.",
              authors=("Ada Lovelace", "Alan Turing"))
    r = rendered(config(subscriber={"keywords": ["distill*", "author:turing"]}), [e])
    assert hits(r.html) == ["Distillation", "distilled", "Turing", "distill"]


@pytest.mark.parametrize("query", ['"language model"', "title:model", "reasoning", "agent*",
                                   '"reinforcement learning" OR abstract:benchmark', "video AND NOT survey"])
def test_no_highlight_outside_a_matched_occurrence(query: str) -> None:
    from newsletter.query import parse

    terms = parse(query).positive_terms()
    r = rendered(config(subscriber={"keywords": [query]}), hf_entries())
    assert r.issue.matches
    for marked in hits(r.html):
        found = words(marked)
        assert any(len(found) == len(t.words) and all(
            (w.startswith(tw) if t.prefix and i == len(t.words) - 1 else stem(w) == tw)
            for i, (w, tw) in enumerate(zip(found, t.words))) for t in terms), marked
    scoped = [t for t in terms if t.field == "title"]
    if scoped and len(terms) == len(scoped):
        assert not re.search(r'<p lang="en">[^<]*<strong|<p>[^<]*<strong', r.html)  # nothing in abstracts


# --- 4 and 10. links, the text part ----------------------------------------------------------

URL = re.compile(r"(?:https?|mailto):[^\s<>\"]+")


@pytest.mark.parametrize("entries", [hf_entries, listing_entries])
def test_html_and_text_carry_the_same_links_each_once(entries: Any) -> None:
    cfg = config(subscriber={"keywords": ["model OR learning OR language"], "max_entries": 12})
    r = rendered(cfg, entries())
    assert len(r.issue.matches) == 12
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]*)"', body(r.html))]
    in_text = URL.findall(r.text)
    assert set(hrefs) == set(in_text)
    assert len(hrefs) == len(set(hrefs)) and len(in_text) == len(set(in_text))  # once each
    assert all(m.entry.url is None or m.entry.url in in_text for m in r.issue.matches)


def test_a_listing_paper_links_to_an_arxiv_search_for_its_title() -> None:
    r = rendered(config(subscriber={"keywords": ["binary"]}), listing_entries())
    assert "https://arxiv.org/search/?query=Binary+and+Ternary+Natural+Language+Generation&searchtype=title" in r.text
    assert 'href="https://arxiv.org/search/?query=Binary+and+Ternary+Natural+Language+Generation&amp;searchtype=title"' \
        in r.html


def test_the_text_part_is_wrapped_and_signed_off_properly() -> None:
    e = Entry(id="x", title="A very long title about language models " * 4, abstract="language model " * 60,
              authors=tuple(f"Author Number {i}" for i in range(3)), upvotes=118, published=date(2026, 6, 11),
              links=Links(page="https://huggingface.co/papers/2606.00001", arxiv="https://arxiv.org/abs/2606.00001"))
    r = rendered(config(subscriber={"keywords": ['"language model" OR title:"long title"'] * 1}), [e])
    for line in r.text.splitlines():
        assert len(line) <= 72 or URL.fullmatch(line.split(": ", 1)[-1].strip()), line
    assert "\n-- \n" in r.text and "\n--\n" not in r.text
    assert r.text.count("https://huggingface.co/papers/2606.00001") == 1
    assert "\n   Why you got this: Matched" in r.text


# --- 6, 7, 11. preheader, dark mode, units ---------------------------------------------------

def test_the_preheader_is_the_first_visible_sentence_and_nothing_is_hidden() -> None:
    r = rendered(config(), hf_entries())
    page = body(r.html)
    assert "display:none" not in page.replace(" ", "") and "opacity:0" not in page.replace(" ", "")
    assert not re.search(r"(?<![-\w])color:\s*#(?:fff|ffffff)\b", page, re.I)  # no white text
    visible = " ".join(unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<!--.*?-->", "", page, flags=re.S))).split())
    assert visible.startswith(r.preheader)
    assert r.text.split("\n", 1)[1].replace("\n", " ").startswith(r.preheader)
    assert r.preheader.startswith(f"{len(r.issue.matches)} papers matched your profile. Top: ")


def test_dark_mode_darkens_the_card_separators() -> None:
    r = rendered(config(), hf_entries())
    dark = r.html.split("@media (prefers-color-scheme: dark)", 1)[1].split("@media only screen", 1)[0]
    assert re.search(r"\.card[^{]*\{[^}]*border-color:\s*#374151", dark)
    assert "border-top:1px solid #e5e7eb" in r.html


def test_meta_units_never_break() -> None:
    e = Entry(id="x", title="language model", authors=("Ada Lovelace",), author_count=5, upvotes=118,
              comments=3, published=date(2026, 6, 11))
    r = rendered(config(), [e])
    for unit in ("▲\u00a0118\u00a0upvotes", "11\u00a0Jun\u00a02026", "(5\u00a0authors)", "3\u00a0comments"):
        assert unit in r.html, unit
    assert "▲ 118 upvotes" in r.text  # plain spaces in the text part, kept on one line by the wrapper


# --- 9. language ------------------------------------------------------------------------------

def test_french_translates_the_theme_and_marks_the_papers_english() -> None:
    cfg = config({"language": "fr"})
    r = rendered(cfg, [Entry(id="x", title="A language model", abstract="We train a language model.",
                             published=date(2026, 2, 3))])
    assert '<html lang="fr"' in r.html
    assert "Se désabonner" in r.html and "Pourquoi cet article" in r.html and "3\u00a0févr.\u00a02026" in r.html
    assert '<h2 class="t" lang="en">' in r.html and '<p lang="en">We train' in r.html
    assert "Se désabonner: https://" in r.text and "1 nouvel article" in r.subject
    assert "Why you got this" not in r.html + r.text and "Unsubscribe" not in r.html + r.text
    english = rendered(config(), [Entry(id="x", title="A language model")])
    assert ' lang="en">' not in body(english.html).split("<h2", 1)[1][:20]  # the page is English already


def test_every_catalogue_has_every_key_and_an_unknown_language_falls_back_to_english() -> None:
    folder = default_templates() / "catalogue"
    english = json.loads((folder / "en.json").read_text())
    for path in folder.glob("*.json"):
        assert set(json.loads(path.read_text())) == set(english), path.name
    r = rendered(config({"language": "xx"}), [Entry(id="x", title="A language model")])
    assert "Unsubscribe" in r.html and '<html lang="xx"' in r.html


# --- 5. size budget ---------------------------------------------------------------------------

def _heavy(n: int) -> list[Entry]:
    base = listing_entries()
    return [Entry(**{**e.__dict__, "id": f"2401.{i:05d}", "title": f"language model {e.title}",
                     "abstract": e.abstract * 3, "authors": tuple(f"Author {k}" for k in range(12)),
                     "author_count": 40, "upvotes": 100 + i, "comments": 3, "organization": "Example Lab",
                     "links": Links(page=f"https://huggingface.co/papers/2401.{i:05d}",
                                    arxiv=f"https://arxiv.org/abs/2401.{i:05d}",
                                    pdf=f"https://arxiv.org/pdf/2401.{i:05d}",
                                    code=f"https://github.com/example/code{i}",
                                    project=f"https://example.org/project/{i}")})
            for i, e in zip(range(n), base * 3)]


@pytest.mark.parametrize("budget", [HTML_BUDGET, 80_000])
def test_a_34_paper_issue_never_exceeds_the_budget_and_says_what_it_left_out(budget: int) -> None:
    cfg = config(subscriber={"max_entries": 34})
    full = rendered(cfg, _heavy(34))
    assert len(full.issue.matches) == 34 and full.dropped == 0
    capped = rendered(cfg, _heavy(34), budget=budget)
    assert len(capped.html.encode()) <= budget
    assert len(capped.issue.matches) + capped.dropped == 34
    # the premise: 34 papers fit in the default budget (~94 KB), not in 80,000 bytes
    assert (len(full.html.encode()) <= budget) == (budget == HTML_BUDGET)
    if budget == HTML_BUDGET:
        assert capped.dropped == 0 and capped.html == full.html
        return
    assert capped.dropped > 0
    line = f"{capped.dropped} more papers matched: read them on the web"
    assert f'<a href="https://digest.example.org/issues/i1">{line}</a>' in capped.html
    assert f"{line}:\n   https://digest.example.org/issues/i1" in capped.text
    assert capped.subject.endswith("34 new papers")  # what matched, not what fitted


@pytest.mark.parametrize("budget", [30_000, 45_000, 60_000, 80_000, HTML_BUDGET, 150_000])
def test_no_issue_over_the_budget_is_returned(budget: int) -> None:
    cfg = config({"base_url": None}, {"max_entries": 34})
    links = messagelib.unsubscribe_links(cfg.settings, "ada@example.org", "s3cret")
    r = fit(issue_of(cfg, _heavy(34)), cfg.settings, unsubscribe_url=links.visible,
            change_url="mailto:digest@example.org", budget=budget)
    assert len(r.html.encode()) <= budget
    issue = issue_of(cfg, _heavy(34))
    assert r.issue.matches == issue.matches[:len(r.issue.matches)]  # the best ranked stay
    if r.dropped:  # it kept as many as fit: one more paper (and one fewer left out) would not
        one_more = SlotRenderer(cfg.settings).render(replace(issue, matches=issue.matches[:len(r.issue.matches) + 1]),
                                                     unsubscribe_url=links.visible,
                                                     change_url="mailto:digest@example.org", total=34)
        assert len(one_more.html.encode()) > budget
    if r.dropped:
        assert f"{r.dropped} more papers matched; raise the size budget or lower max_entries" in r.html


def test_an_impossible_budget_is_a_clear_error() -> None:
    from newsletter.errors import RenderError

    with pytest.raises(RenderError, match="does not fit in 1000 bytes of HTML even without papers"):
        rendered(config(), hf_entries(), budget=1000)


# --- issue 10 item 4: render once, assemble many -----------------------------------------------

QUERIES = ['"language model"', "reasoning", "agent*", "title:video", "abstract:benchmark", "author:wang",
           '"reinforcement learning"', "diffusion OR image", "LLM AND NOT survey", "robot*", "title:model",
           '"large language"', "multimodal", "code", "speech OR audio", "3D", "attention", "data"]


def _subscribers(n: int) -> list[Subscriber]:
    rng = random.Random(13)
    subs = []
    for i in range(n):
        subs.append(Subscriber(
            email=f"user{i}@example.org", name=rng.choice([None, f"User {i}", "Zoë Ł", "A \"quoted\" <name>"]),
            keywords=tuple(rng.sample(QUERIES, rng.randint(1, 5))),
            exclude=tuple(rng.sample(["survey", "title:benchmark", "medical"], rng.randint(0, 1))),
            schedule="0 7 * * *", timezone=rng.choice(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]),
            max_entries=rng.choice([3, 5, 10, 20]), min_upvotes=0, send_empty=True))
    return subs


def _web_links(cfg: Config, email: str, issue_id: str, web: bool) -> dict[str, str]:
    """The links a digest carries: with a web service, the preference centre, the issue on the web
    and a rating prefix (each paper's "more / less like this"); without, a mailto only."""
    if not web:
        return {"change_url": messagelib.change_profile_url(cfg.settings, email)}
    links = WebLinks(cfg.settings.base_url or "", "s3cret")
    return {"change_url": links.manage(email, 3), "view_url": links.view(issue_id),
            "rate_url": links.rating(email, issue_id)}


@pytest.mark.parametrize(("language", "web"), [("en", False), ("fr", False), ("en", True), ("fr", True)])
def test_assembled_issues_are_byte_identical_to_rendering_each_alone(language: str, web: bool) -> None:
    cfg = config({"language": language})
    entries = hf_entries() + listing_entries()
    env = environment(None)  # templates parsed once; each `render` alone still builds every piece anew
    shared = SlotRenderer(cfg.settings, environment(None))
    compared, shapes = 0, set()
    for k, sub in enumerate(_subscribers(200)):
        issue = issue_of(cfg, entries, sub, issue_id=f"issue{k}")
        links = messagelib.unsubscribe_links(cfg.settings, sub.email, "s3cret")
        personal = _web_links(cfg, sub.email, issue.id, web)
        fast = shared.render(issue, unsubscribe_url=links.visible, **personal)
        alone = render(issue, cfg.settings, unsubscribe_url=links.visible, env=env, **personal)
        assert (fast.html, fast.text, fast.subject, fast.preheader) == \
            (alone.html, alone.text, alone.subject, alone.preheader), sub
        assert "".join(fast.html_pieces) == fast.html and "".join(fast.text_pieces) == fast.text
        assert fast == alone and pickle.loads(pickle.dumps(fast)) == fast
        if web:  # every paper carries its own rating links, under this issue's signed prefix
            rate = personal["rate_url"]
            for m in issue.matches:
                assert f'href="{rate}/more/{m.entry.id}"' in fast.html and f"{rate}/less/{m.entry.id}\n" in fast.text
            assert fast.html.count("/more/") == len(issue.matches) and personal["view_url"] in fast.text
        if k % 20 == 0:  # and both equal the whole document compiled at once
            cards = [shared.card(m) for m in issue.matches]
            context = shared.context(issue, unsubscribe_url=links.visible, **personal)
            assert compile_whole(shared.env, context, cards) == (fast.html, fast.text)
        compared += bool(issue.matches)
        shapes.add(len(issue.matches))
    assert compared > 150
    assert len(shared._frames) == len(shapes)  # the frame was compiled once per shape, not per subscriber


@pytest.mark.parametrize("parts_kept", [0, 1_000_000])
def test_a_trimmed_renderer_keeps_its_plans_and_its_bytes(parts_kept: int) -> None:
    """Memory stays bounded (the builder trims the slot renderer past a number of cards): the cards
    go, the frames, plans and subjects stay, the cards' parts stay within their own bound, and what it renders
    afterwards is still byte for byte what rendering each issue alone gives."""
    cfg = config({})
    entries = hf_entries() + listing_entries()
    env = environment(None)
    shared = SlotRenderer(cfg.settings, environment(None))
    subs = _subscribers(120)
    for first, half in ((True, subs[:60]), (False, subs[60:])):
        for sub in half:
            issue = issue_of(cfg, entries, sub, issue_id=f"issue-{sub.email}")
            links = messagelib.unsubscribe_links(cfg.settings, sub.email, "s3cret")
            personal = _web_links(cfg, sub.email, issue.id, True)
            fast = shared.render(issue, unsubscribe_url=links.visible, **personal)
            alone = render(issue, cfg.settings, unsubscribe_url=links.visible, env=env, **personal)
            assert (fast.html, fast.text) == (alone.html, alone.text), sub
        if first:  # trimmed between the two halves
            plans, frames, heads = dict(shared._plans), dict(shared._frames), dict(shared._heads)
            assert shared.card_count > 0 and any(not isinstance(p, int) for p in plans.values()) and heads
            parts = shared._maker.parts
            assert parts > 0
            shared.trim(parts_kept)
            assert shared.card_count == 0
            # not learned again: the plans, frames, subjects and preheaders
            assert shared._plans == plans and shared._frames == frames and shared._heads == heads
            assert shared._maker.parts == (parts if parts_kept >= parts else 0)


def test_an_odd_first_issue_does_not_keep_its_shape_from_a_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name carrying the placeholder text takes the direct path; the next issues of the same shape
    are still filled from a plan (one hostile sign-up does not slow down everyone like it), and the
    plans a renderer keeps are bounded."""
    cfg = config()
    entries = hf_entries() + listing_entries()
    shared = SlotRenderer(cfg.settings, environment(None))
    base = _subscribers(1)[0]
    names = ["x @@nl-hole-0@@ y", "Ada", "Grace", "Alan"]
    got = []
    for k, name in enumerate(names):
        sub = replace(base, email=f"r{k}@example.org", name=name)
        issue = issue_of(cfg, entries, sub, issue_id=f"odd{k}")
        fast = shared.render(issue, unsubscribe_url="https://u.example/x", change_url="mailto:c@example.org")
        alone = render(issue, cfg.settings, unsubscribe_url="https://u.example/x", change_url="mailto:c@example.org")
        assert (fast.html, fast.text) == (alone.html, alone.text)
        got.append(isinstance(fast.html_pieces, Assembled))
    assert got == [False, False, True, True]  # the direct path, the plan's reference, then the plan
    monkeypatch.setattr(rendering, "PLANS_KEPT", 2)
    for k, sub in enumerate(_subscribers(40)):
        shared.render(issue_of(cfg, entries, sub, issue_id=f"cap{k}"), unsubscribe_url="https://u.example/x",
                      change_url="mailto:c@example.org")
        assert len(shared._plans) <= 2


def test_a_card_made_again_after_a_trim_reuses_its_parts_encoded_form() -> None:
    """A card's parts (the paper with its marks, the "why" line) are encoded once, when made, and kept
    with the parts: a card made again from kept parts encodes nothing again."""
    cfg = config()
    entries = hf_entries() + listing_entries()
    shared = SlotRenderer(cfg.settings, environment(None))
    issue = issue_of(cfg, entries, _subscribers(1)[0])
    before = shared.cards(issue)
    shared.trim(10**9)  # forget the cards, keep their parts
    after = shared.cards(issue)
    assert before and all(a is not b for a, b in zip(after, before))
    for a, b in zip(after, before):
        for mine, theirs in ((a.html_parts, b.html_parts), (a.text_parts, b.text_parts)):
            assert all(type(x) is SharedText and x is y for x, y in zip(mine, theirs))


@pytest.mark.parametrize("where", ["title", "abstract"])
def test_a_later_card_that_carries_the_placeholder_text_is_rendered_the_direct_way(where: str) -> None:
    """Once a shape has a plan, an issue of that shape whose card carries the placeholder text (in the
    paper's title or abstract) is still what rendering it alone gives: the card is known odd when its
    parts are made. (A "why" line carries it only through the reader's own query, which makes all of
    that reader's issues take the direct path.)"""
    plain = [Entry(id=f"p{k}", title=f"Language models, part {k}", abstract="We study language models.")
             for k in range(3)]
    hole = "Hole @@nl-hole-0@@ study of language models"
    odd = Entry(id="odd", title=hole if where == "title" else "Language models, odd part",
                abstract=hole if where == "abstract" else "We study language models.")
    cfg = config(subscriber={"keywords": ["language"]})
    shared = SlotRenderer(cfg.settings, environment(None))
    cards, planned = [], []
    for k, entries in enumerate([plain[:2], plain[1:], [plain[0], odd]]):
        issue = issue_of(cfg, entries, issue_id=f"i{k}")
        fast = shared.render(issue, unsubscribe_url="https://u.example/x", change_url="mailto:c@example.org")
        alone = render(issue, cfg.settings, unsubscribe_url="https://u.example/x", change_url="mailto:c@example.org")
        assert (fast.html, fast.text) == (alone.html, alone.text)
        cards.append(shared.cards(issue))
        planned.append(isinstance(fast.html_pieces, Assembled))
    assert planned == [False, True, False]  # the plan's reference, the plan, the direct path
    assert sorted(c.odd for c in cards[2]) == [False, True] and not any(c.odd for c in cards[1])
    assert "@@nl-hole-0@@ study" in fast.text


def test_data_that_carries_the_placeholder_text_is_rendered_the_direct_way() -> None:
    e = Entry(id="x", title="language model @@nl-hole-0@@ and @@nl-hole-7@@", abstract="@@nl-hole-")
    r = rendered(config(subscriber={"name": "@@nl-hole-1@@"}), [e])
    assert "1. *language model* @@nl-hole-0@@ and @@nl-hole-7@@" in r.text and "@@nl-hole-1@@" in r.html
    assert r.html.count('<h2 class="t"') == 1


@pytest.mark.parametrize("web", [False, True])
def test_messages_filled_from_plans_are_the_bytes_of_rendering_each_alone(tmp_path: Path, web: bool) -> None:
    """The default theme is rendered once per shape and filled per subscriber: the messages are the
    same bytes as each issue rendered alone through Jinja; a user's template is never planned."""
    cfg = config()
    entries = hf_entries() + listing_entries()
    shared = SlotRenderer(cfg.settings, environment(None))
    env = environment(None)
    filled = 0
    for k, sub in enumerate(_subscribers(120)):
        issue = issue_of(cfg, entries, sub, issue_id=f"issue{k}")
        links = messagelib.unsubscribe_links(cfg.settings, sub.email, "s3cret")
        personal = _web_links(cfg, sub.email, issue.id, web)
        fast = shared.render(issue, unsubscribe_url=links.visible, budget=HTML_BUDGET, **personal)
        alone = render(issue, cfg.settings, unsubscribe_url=links.visible, env=env, budget=HTML_BUDGET, **personal)
        assert messagelib.build(fast, cfg.settings, sub, links, NOW) == \
            messagelib.build(alone, cfg.settings, sub, links, NOW), sub
        filled += isinstance(fast.html_pieces, Assembled)
    assert filled >= 40  # shapes recur: those issues are filled from their shape's plan, not rendered
    (tmp_path / "issue.txt.j2").write_text((default_templates() / "issue.txt.j2").read_text())
    custom = SlotRenderer(cfg.settings, environment(tmp_path))
    for k in range(3):
        custom.render(issue_of(cfg, entries, issue_id=f"c{k}"), unsubscribe_url="https://u.example/x",
                      change_url="mailto:c@example.org")
    assert not custom._plans


@pytest.mark.parametrize("matched", ["Matched {reasons}", "{reasons} & more", "Trouvé : {reasons}",
                                     "{reasons} ({reasons})", "Matched", "Matched {reasons:.12}",
                                     "Matched {reasons:60}", "Matched {reasons[0]}", "Matched {reasons!r}",
                                     "{{x}} {reasons} \x00"])
def test_a_why_line_and_its_html_say_the_same_in_any_wording(matched: str) -> None:
    """The "why" line's HTML is made from its reasons escaped once each: it is the line escaped,
    whatever the wording around the reasons (a translation may say them twice, or not at all)."""
    from newsletter.cards import CardMaker
    from newsletter.highlights import esc

    class Words:  # a catalogue with these words
        language = "en"
        words = {"matched": matched, "in_fields": "{term} in {fields}", "and": "and", "field_title": "title",
                 "field_abstract": "abstract"}

        def wording(self, key: str) -> str:
            return self.words[key]

        def __call__(self, key: str, **values: Any) -> str:
            return self.wording(key).format(**values)

    maker = CardMaker(Words())  # type: ignore[arg-type]
    for pairs in [(('"a<b" & c', "title"), ("d'e", "abstract"), ('"a<b" & c', "abstract")), (("x", "title"),)]:
        line, html = maker._why_line(pairs)
        reasons = "; ".join(f"{t} in {' and '.join(dict.fromkeys(f for tt, f in pairs if tt == t))}"
                            for t in dict.fromkeys(t for t, _ in pairs))
        assert line == matched.format(reasons=reasons) and html == esc(line)
