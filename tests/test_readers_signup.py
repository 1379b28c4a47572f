"""Sign-up with double opt-in on the real stack (uvicorn, a real SQLite state, aiosmtpd): the mail,
the confirmation page and its POST, the one answer for every standing of an address, rate limits,
allowed domains, `subscribe: false` and the purge of sign-ups nobody confirmed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from conftest import Recorder
from newsletter.models import Subscriber
from newsletter.signup import Policy
from newsletter.store_readers import ReaderStore
from readers_kit import (NOW, app_for, csrf, dump, link, open_project, plain, ports, serving_on, wait_for_mail,
                         write_project)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    smtp_port, web_port = ports()
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    dep = open_project(write_project(tmp_path, smtp_port, web_port))
    clock = {"now": NOW}
    try:
        with serving_on(app_for(dep, web_port, clock=lambda: clock["now"]), web_port) as url:
            yield {"url": url, "dep": dep, "mail": recorder, "clock": clock}
    finally:
        controller.stop()


def sign_up(url: str, client: httpx.Client | None = None, **fields: str) -> httpx.Response:
    c = client or httpx.Client()
    form = c.get(f"{url}/subscribe")
    data = {"csrf": csrf(form.text), "mode": "keywords", "keywords": '"language model"', "cadence": "daily",
            "timezone": "Europe/Berlin", "action": "subscribe", **fields}
    return c.post(f"{url}/subscribe", data=data)


def test_sign_up_mail_confirm_page_and_post(site: dict[str, Any]) -> None:
    url, dep, mail = site["url"], site["dep"], site["mail"]
    answer = sign_up(url, email="Lin@Example.org", name="Lin")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (msg,) = wait_for_mail(mail, 1)
    assert msg["To"] == "lin@example.org" and msg["Subject"] == "Confirm your subscription to Test Digest"
    confirm = link(msg, "confirm")
    with ReaderStore(dep.state) as store:
        assert store.subscriber("lin@example.org") is None
    page = httpx.get(confirm)  # what a mail scanner does: nothing
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    before = dump(dep.state)
    assert httpx.head(confirm).status_code == 200
    assert dump(dep.state) == before
    assert httpx.post(confirm, data={}).status_code == 403  # no form token: refused, nothing recorded
    assert dump(dep.state) == before
    done = httpx.post(confirm, data={"csrf": csrf(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    with ReaderStore(dep.state) as store:
        sub = store.subscriber("lin@example.org")
        assert sub is not None and sub.keywords == ('"language model"',) and sub.timezone == "Europe/Berlin"
        assert sub.name == "Lin" and sub.schedule == "0 7 * * *"
        assert store.signup("lin@example.org") is None
    again = httpx.post(confirm, data={"csrf": csrf(page.text)})  # a used link is like any bad link
    assert again.status_code == 400 and "This link is not valid" in again.text


def test_one_answer_for_new_pending_subscribed_and_unsubscribed(site: dict[str, Any]) -> None:
    url, dep, mail = site["url"], site["dep"], site["mail"]
    with ReaderStore(dep.state) as store:
        store.add_subscribers([Subscriber("held@example.org", None, ("rag",), (), "0 7 * * *", "UTC", 5, 0, False,
                                          home="store")], NOW)
    dep.unsubscribe("ada@example.org", NOW)
    sign_up(url, email="pending@example.org")
    wait_for_mail(mail, 1)
    answers = {who: sign_up(url, email=who) for who in
               ("new@example.org", "pending@example.org", "held@example.org", "ada@example.org")}
    texts = {plain(a.text).replace(who, "ADDRESS") for who, a in answers.items()}
    assert len(texts) == 1 and all(a.status_code == 200 for a in answers.values())
    mails = {m["To"]: m["Subject"] for m in wait_for_mail(mail, 5)[1:]}
    assert mails == {"new@example.org": "Confirm your subscription to Test Digest",
                     "pending@example.org": "Confirm your subscription to Test Digest",
                     "held@example.org": "You are subscribed to Test Digest",
                     # unsubscribed: coming back needs a new confirmation, like anyone new
                     "ada@example.org": "Confirm your subscription to Test Digest"}


def test_an_active_subscriber_is_told_so_by_mail_not_on_the_page(site: dict[str, Any]) -> None:
    url, mail = site["url"], site["mail"]
    new, subscribed = sign_up(url, email="new@example.org"), sign_up(url, email="ada@example.org")
    assert plain(new.text).replace("new@", "X@") == plain(subscribed.text).replace("ada@", "X@")
    mails = {m["To"]: m for m in wait_for_mail(mail, 2)}
    assert mails["ada@example.org"]["Subject"] == "You are subscribed to Test Digest"
    assert "/manage/" in mails["ada@example.org"].get_content()


def test_query_errors_are_shown_inline_with_their_column(site: dict[str, Any]) -> None:
    answer = sign_up(site["url"], email="x@example.org", keywords='"language model\ntitle:diffusion')
    assert answer.status_code == 400
    assert "Keywords, line 1: unclosed quote at column 1" in answer.text
    bad = sign_up(site["url"], email="not an address")
    assert bad.status_code == 400 and "An email address must have an @-sign." in bad.text
    assert site["mail"].messages == []


def test_preview_shows_the_last_seven_days_and_records_nothing(site: dict[str, Any]) -> None:
    url, dep = site["url"], site["dep"]
    before = dump(dep.state)
    answer = sign_up(url, email="x@example.org", action="preview")
    assert "The last 7 days would have brought" in answer.text and "RegMix: Data Mixture as Regression" in answer.text
    assert dump(dep.state) == before and site["mail"].messages == []


def test_rate_limit_per_address_sends_nothing_more_and_answers_the_same(site: dict[str, Any]) -> None:
    url, mail = site["url"], site["mail"]
    answers = [sign_up(url, email="spam@example.org") for _ in range(5)]
    assert len({plain(a.text) for a in answers}) == 1
    wait_for_mail(mail, 3)
    assert [m[1] for m in mail.messages] == [["spam@example.org"]] * Policy().per_address
    site["clock"]["now"] = NOW + timedelta(hours=1, minutes=1)
    sign_up(url, email="spam@example.org")
    assert len(wait_for_mail(mail, 4)) == 4


def test_rate_limit_per_client(site: dict[str, Any]) -> None:
    url, mail = site["url"], site["mail"]
    for n in range(Policy().per_client + 2):
        sign_up(url, email=f"n{n}@example.org")
    wait_for_mail(mail, Policy().per_client)
    assert len(mail.messages) == Policy().per_client


def test_unconfirmed_sign_ups_expire_and_are_purged(site: dict[str, Any]) -> None:
    url, dep, mail = site["url"], site["dep"], site["mail"]
    sign_up(url, email="late@example.org")
    confirm = link(wait_for_mail(mail, 1)[0], "confirm")
    site["clock"]["now"] = NOW + timedelta(hours=48)
    assert httpx.get(confirm).status_code == 400
    sign_up(url, email="next@example.org")  # each sign-up purges what expired
    with ReaderStore(dep.state) as store:
        assert store.signup("late@example.org") is None and store.signup("next@example.org") is not None


def test_the_newest_link_replaces_the_older_one(site: dict[str, Any]) -> None:
    url, mail = site["url"], site["mail"]
    sign_up(url, email="twice@example.org")
    sign_up(url, email="twice@example.org")
    first, second = (link(m, "confirm") for m in wait_for_mail(mail, 2))
    assert httpx.get(first).status_code == 400 and httpx.get(second).status_code == 200


def test_allowed_domains_and_closed_page(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    _, web_port = ports()
    dep = open_project(write_project(tmp_path, smtp_port, web_port))
    lab = app_for(dep, web_port, policy=Policy(domains=("lab.example.org",)))
    with serving_on(lab, web_port) as url:
        refused = sign_up(url, email="someone@gmail.example")
        assert refused.status_code == 400 and "open to addresses at lab.example.org only" in refused.text
        assert sign_up(url, email="me@lab.example.org").status_code == 200
        assert sign_up(url, email="me@dept.lab.example.org").status_code == 200
    closed = app_for(dep, web_port, policy=Policy(enabled=False))
    with serving_on(closed, web_port) as url:
        assert httpx.get(f"{url}/subscribe").status_code == 404
        assert httpx.post(f"{url}/subscribe", data={"email": "a@b.org"}).status_code == 404


def test_a_form_from_another_site_is_refused(site: dict[str, Any]) -> None:
    url = site["url"]
    c = httpx.Client()
    token = csrf(c.get(f"{url}/subscribe").text)
    answer = c.post(f"{url}/subscribe", data={"csrf": token, "email": "x@example.org", "keywords": "rag",
                                             "action": "subscribe"}, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    forged = c.post(f"{url}/subscribe", data={"csrf": "x" + token[1:], "email": "x@example.org", "keywords": "rag",
                                             "action": "subscribe"})
    assert forged.status_code == 403 and "Please try again" in forged.text
    assert site["mail"].messages == []
