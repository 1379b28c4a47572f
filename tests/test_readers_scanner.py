"""A mail scanner that fetches every link of 100 digests (GET and HEAD) changes nothing: no
confirmation, no rating, no unsubscribe, no profile change; the links are the ones the digests
really carry (unsubscribe, the preference centre, the issue on the web, more / less like this per
paper). And the web view and the feed show the issues that were sent."""

from __future__ import annotations

import re
import sqlite3
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from conftest import Recorder, free_port
from newsletter import signup
from newsletter.links import Links
from newsletter.models import Subscriber
from newsletter.store_readers import ReaderStore
from readers_kit import NOW, SECRET, app_for, dump, open_project, serving_on, write_project

READERS = 100


def _urls(raw: bytes, base: str) -> set[str]:
    msg = message_from_bytes(raw, policy=policy.default)
    text = "".join(str(p.get_content()) for p in msg.walk() if p.get_content_maintype() == "text")  # type: ignore[attr-defined]
    found = set(re.findall(r"https?://[^\s\"'<>]+", text + str(msg["List-Unsubscribe"])))
    return {u.replace("&amp;", "&") for u in found if u.startswith(base)}


def test_fetching_every_link_of_100_digests_changes_nothing(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_port, web_port))
    people = [Subscriber(f"reader{n:03}@example.org", None, ('"language model"',), (), "0 7 * * *", "UTC", 5, 0,
                         False, home="store") for n in range(READERS - 1)]
    with ReaderStore(dep.state) as store:
        store.add_subscribers(people, NOW)
    report = dep.send(NOW, fetch=False).report
    assert len(report.sent) == READERS and len(recorder.messages) == READERS
    base = dep.config.settings.base_url or ""
    links = Links(base, SECRET)
    urls: set[str] = set()
    papers = 0
    with ReaderStore(dep.state) as store:
        for _, (to,), raw in recorder.messages:
            carried = _urls(raw, base)  # every link of the digest: unsubscribe, manage, view, more/less per paper
            issue = re.search(rb"X-Newsletter-Issue: (\S+)", raw)
            assert issue
            entries = store.issue_entries(issue.group(1).decode())
            papers += len(entries)
            assert {kind: sum(f"/{kind}/" in u for u in carried) for kind in ("unsubscribe", "manage", "view")} == \
                {"unsubscribe": 1, "manage": 1, "view": 1}, carried
            assert {u.rsplit("/", 2)[-2:][0] for u in carried if "/rate/" in u} == {"more", "less"}
            assert sum("/rate/" in u for u in carried) == 2 * len(entries), carried
            urls |= carried | {links.feed(to, store.link_version(to))}  # and the feed the preference centre shows
        # a pending sign-up's confirmation link, as its mail carries it
        request = signup.read_profile({"email": "new@example.org", "keywords": "rag"}, dep.config.settings,
                                      with_address=True)
        notice = signup.request(store, dep.config, signup.Policy(), links, request.fields, "192.0.2.1", NOW, None)
        assert notice is not None
        urls |= set(re.findall(r"https?://\S+/confirm/\S+", notice.text))
    assert sum("/unsubscribe/" in u for u in urls) == READERS and sum("/rate/" in u for u in urls) == 2 * papers
    assert sum("/manage/" in u for u in urls) == READERS and papers >= READERS
    before = dump(dep.state)
    config_text = dep.config.path.read_text()
    with serving_on(app_for(dep, web_port), web_port), httpx.Client() as scanner:
        for url in sorted(urls):
            assert scanner.get(url).status_code == 200, url
            assert scanner.head(url).status_code == 200, url
    assert dump(dep.state) == before and dep.config.path.read_text() == config_text
    with sqlite3.connect(dep.state) as db:
        assert db.execute("SELECT count(*) FROM ratings").fetchone()[0] == 0


def test_the_web_view_and_the_feed_show_the_issues_that_were_sent(tmp_path: Path,
                                                                  smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_port, web_port))
    dep.send(NOW, fetch=False)
    ((_, _, raw),) = recorder.messages
    issue_id = re.search(rb"X-Newsletter-Issue: (\S+)", raw).group(1).decode()  # type: ignore[union-attr]
    subject = str(message_from_bytes(raw, policy=policy.default)["Subject"])
    links = Links(dep.config.settings.base_url or "", SECRET)
    with ReaderStore(dep.state) as store:
        titles = [e.title for e in store.issue_entries(issue_id)]
    assert titles
    with serving_on(app_for(dep, web_port), web_port):
        page = httpx.get(links.view(issue_id))
        feed = httpx.get(links.feed("ada@example.org", 0))
    assert page.status_code == 200 and subject in page.text
    shown = re.findall(r'<strong class="paper">(?:<a [^>]+>)?([^<]+)<', page.text)
    assert [t.replace("&#39;", "'").replace("&amp;", "&") for t in shown] == titles
    assert "/feedback/" in page.text
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert f"<title>{subject}</title>" in feed.text and links.view(issue_id) in feed.text
    for title in titles:
        assert title.replace("&", "&amp;") in feed.text
