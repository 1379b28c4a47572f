"""The preference centre and "more / less like this" on the real stack: edits land where the
subscriber lives (subscribers.yaml with its comments, or the store), every change is a POST with
the page's form token, links are revocable, ratings become proposals with a replayed effect."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import Recorder, free_port
from newsletter import tokens
from newsletter.config import load
from newsletter.links import LESS, MORE, Links
from newsletter.models import Subscriber
from newsletter.matching import Profile, select
from newsletter.store import Store
from newsletter.roster import Roster
from newsletter.store_readers import ReaderStore
from newsletter.tokens import Purpose
from readers_kit import ENV, NOW, SECRET, app_for, csrf, dump, open_project, plain, serving_on, write_project


@pytest.fixture
def site(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> Iterator[dict[str, Any]]:
    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_server[1], web_port))
    with ReaderStore(dep.state) as store:
        store.add_subscribers([Subscriber("held@example.org", "Held", ('"language model"',), (), "0 7 * * *", "UTC",
                                          5, 0, False, home="store")], NOW)
    links = Links(dep.config.settings.base_url or "", SECRET)
    with serving_on(app_for(dep, web_port), web_port) as url:
        yield {"url": url, "dep": dep, "links": links, "path": dep.config.path}


def post(url: str, page: httpx.Response, **data: str) -> httpx.Response:
    return httpx.post(url, data={"csrf": csrf(page.text), **data})


def profile(page: httpx.Response, **changes: str) -> dict[str, str]:
    return {"mode": "keywords", "keywords": '"language model"', "exclude": "", "cadence": "daily",
            "timezone": "UTC", "max_entries": "5", **changes}


def member(site: dict[str, Any], email: str) -> Any:
    config = load(site["path"], ENV)
    with ReaderStore(site["dep"].state) as store:
        return Roster(config, store).member(email)


def test_a_file_subscriber_is_edited_in_the_file_keeping_its_comments(site: dict[str, Any]) -> None:
    manage = site["links"].manage("ada@example.org", 0)
    page = httpx.get(manage)
    assert page.status_code == 200 and "&#34;language model&#34;" in page.text
    before = dump(site["dep"].state)
    saved = post(manage, page, action="save", **profile(page, keywords="title:diffusion\nquantization",
                                                         cadence="weekdays", timezone="Asia/Tokyo"))
    assert saved.status_code == 200 and "Saved." in saved.text
    # the edit was replayed over the stored papers of the last 30 days before it was saved
    with Store(site["dep"].state) as store:
        papers = store.entries()
    old = {m.entry.id for m in select(papers, Profile.from_strings(['"language model"']))}
    new = {m.entry.id for m in select(papers, Profile.from_strings(["title:diffusion", "quantization"]))}
    assert (f"Over the last 30 days it would have brought {len(new - old)} more papers and {len(old - new)} "
            "fewer.") in saved.text.replace("&#39;", "'")
    text = site["path"].read_text()
    assert text.startswith("# kept by hand\n")
    ada = yaml.safe_load(text)["subscribers"][0]
    assert ada["keywords"] == ["title:diffusion", "quantization"] and ada["timezone"] == "Asia/Tokyo"
    assert ada["schedule"] == "0 7 * * mon-fri"
    assert dump(site["dep"].state) == before  # nothing of a file subscriber's profile goes to the store
    assert "title:diffusion" in httpx.get(manage).text  # the page shows the edit at once


def test_a_store_subscriber_is_edited_in_the_store(site: dict[str, Any]) -> None:
    manage = site["links"].manage("held@example.org", 0)
    page = httpx.get(manage)
    text = site["path"].read_text()
    saved = post(manage, page, action="save", **profile(page, exclude="survey", max_entries="3"))
    assert "Saved." in saved.text and site["path"].read_text() == text
    held = member(site, "held@example.org").subscriber
    assert held.exclude == ("survey",) and held.max_entries == 3 and held.home == "store"


def test_a_bad_query_is_shown_inline_and_changes_nothing(site: dict[str, Any]) -> None:
    manage = site["links"].manage("ada@example.org", 0)
    page = httpx.get(manage)
    text = site["path"].read_text()
    answer = post(manage, page, action="save", **profile(page, keywords="rag\n(diffusion OR"))
    assert answer.status_code == 400 and "Keywords, line 2:" in answer.text and "column" in answer.text
    assert site["path"].read_text() == text


def test_pause_resume_and_unsubscribe_from_the_page(site: dict[str, Any]) -> None:
    manage = site["links"].manage("held@example.org", 0)
    page = httpx.get(manage)
    paused = post(manage, page, action="pause")
    assert 'id="state">paused<' in paused.text and member(site, "held@example.org").standing.state == "paused"
    resumed = post(manage, paused, action="resume")
    assert member(site, "held@example.org").standing.active and "Resumed." in resumed.text
    gone = post(manage, resumed, action="unsubscribe")
    assert "You are unsubscribed" in gone.text and member(site, "held@example.org").standing.state == "unsubscribed"
    after = httpx.get(manage)
    assert "sign up again" in after.text
    assert post(manage, resumed, action="resume").status_code == 400  # coming back needs a confirmation
    assert member(site, "held@example.org").standing.state == "unsubscribed"


def test_a_bounced_reader_can_lift_the_suppression(site: dict[str, Any]) -> None:
    with ReaderStore(site["dep"].state) as store:
        store.record_bounce("r1", "held@example.org", "hard", "5.1.1", None, NOW, soft_limit=5, since=NOW)
    manage = site["links"].manage("held@example.org", 0)
    page = httpx.get(manage)
    assert 'id="state">bounced<' in page.text
    post(manage, page, action="resume")
    assert member(site, "held@example.org").standing.active


def test_rotating_revokes_the_old_manage_and_feed_links(site: dict[str, Any]) -> None:
    links = site["links"]
    manage, feed = links.manage("held@example.org", 0), links.feed("held@example.org", 0)
    assert httpx.get(feed).status_code == 200
    rotated = post(manage, httpx.get(manage), action="rotate")
    new = re.search(r'href="([^"]+/manage/[^"]+)"', rotated.text)
    assert new and new.group(1) == links.manage("held@example.org", 1)
    assert httpx.get(manage).status_code == 400 and httpx.get(feed).status_code == 400
    assert httpx.get(new.group(1)).status_code == 200
    assert httpx.get(links.feed("held@example.org", 1)).status_code == 200
    with ReaderStore(site["dep"].state) as store:
        assert store.link_versions(["held@example.org", "ada@example.org"]) == {"held@example.org": 1}


def test_less_like_this_becomes_a_proposal_with_its_replayed_effect(site: dict[str, Any]) -> None:
    links, state = site["links"], site["dep"].state
    with ReaderStore(state) as store:
        paper = next(e for e in store.entries() if e.title.startswith("RegMix"))
    less = links.feedback("held@example.org", paper.id, LESS)
    before = dump(state)
    page = httpx.get(less)
    assert page.status_code == 200 and "RegMix" in page.text and dump(state) == before
    assert httpx.post(less, data={}).status_code == 403 and dump(state) == before
    done = post(less, page)
    assert "Thank you" in done.text
    with ReaderStore(state) as store:
        (rating,) = store.ratings("held@example.org")
    assert rating.verdict == LESS and rating.entry_id == paper.id
    manage = links.manage("held@example.org", 0)
    centre = httpx.get(manage)
    proposal = re.search(r'name="query" value="([^"]+)"', centre.text)
    assert proposal and "Never send" in centre.text and "including this one" in centre.text
    effect = re.search(r'class="effect">([^<]+)<', centre.text)
    assert effect and effect.group(1).startswith("\u2212")
    query = proposal.group(1).replace("&#34;", '"')
    applied = post(manage, centre, action="apply", kind="exclude", query=query, entry=paper.id)
    assert "Applied" in applied.text
    held = member(site, "held@example.org").subscriber
    assert held.exclude == (query,)
    with ReaderStore(state) as store:
        assert store.ratings("held@example.org") == []


def test_more_like_this_proposes_a_keyword_drawn_from_the_paper(site: dict[str, Any]) -> None:
    links, state = site["links"], site["dep"].state
    with ReaderStore(state) as store:
        paper = next(e for e in store.entries() if e.title.startswith("Causal Inference by String"))
    more = links.feedback("held@example.org", paper.id, MORE)
    post(more, httpx.get(more))
    centre = httpx.get(links.manage("held@example.org", 0))
    assert "Also send" in centre.text and "including this one" in centre.text
    assert re.search(r'class="effect">\+\d+ paper', centre.text)


def _bad(kind_purpose: Purpose, subject: str) -> dict[str, str]:
    good = tokens.make(kind_purpose, subject, SECRET)
    return {
        "forged": tokens.make(kind_purpose, subject, "guessed-secret-guessed-secret"),
        "altered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "wrong purpose": tokens.make(Purpose.UNSUBSCRIBE, subject, SECRET),
        "expired": tokens.make(kind_purpose, subject, SECRET, expires=NOW - timedelta(seconds=1)),
        "junk": "not-a-token",
    }


def test_every_bad_link_gets_the_same_refusal_everywhere(site: dict[str, Any]) -> None:
    url = site["url"]
    cases = {"manage": (Purpose.MANAGE, "0\nheld@example.org"), "feed": (Purpose.FEED, "0\nheld@example.org"),
             "confirm": (Purpose.CONFIRM, "held@example.org\nnonce"),
             "feedback": (Purpose.FEEDBACK, "-1\nheld@example.org\nx\n"), "view": (Purpose.VIEW, "issue")}
    answers = []
    for path, (purpose, subject) in cases.items():
        for kind, token in _bad(purpose, subject).items():
            for method in ("GET", "POST"):
                if method == "POST" and path in ("feed", "view"):
                    continue
                answer = httpx.request(method, f"{url}/{path}/{token}")
                assert answer.status_code == 400, (path, kind, method)
                answers.append(plain(answer.text))
    assert len(set(answers)) == 1
