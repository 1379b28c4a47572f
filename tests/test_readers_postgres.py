"""The reader-facing side on a PostgreSQL state (a real server the suite starts): sign up and confirm,
the first digest, the preference centre, "less like this", a bounce report; GETs change nothing."""

from __future__ import annotations

import mailbox
from pathlib import Path
from typing import Any

import httpx

from conftest import PgCluster, Recorder, free_port
from newsletter import bounces, ingest
from newsletter.deployment import Deployment
from newsletter.links import LESS, Links
from newsletter.roster import Roster
from newsletter.store.schema import TABLES
from newsletter.store_readers import PostgresReaderStore, ReaderStore
from readers_kit import ENV, NOW, SECRET, app_for, csrf, dsn, link, serving_on, wait_for_mail, write_project

READERS_TABLES = ("signups", "rate_events", "ratings", "bounces", "link_versions")
LIN = "lin@example.org"


def dump(url: str) -> dict[str, list[Any]]:
    """Every row of every table of the PostgreSQL state."""
    with ReaderStore(url) as store:
        return {t: sorted(map(repr, store.rows(t) if t in TABLES else store._q(f"SELECT * FROM {t}")))
                for t in (*TABLES, *READERS_TABLES)}


def test_sign_up_manage_feedback_and_bounces_on_postgresql(tmp_path: Path, pg_cluster: PgCluster,
                                                           smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    url = pg_cluster.database()
    dep = Deployment.open(write_project(tmp_path, smtp_port, web_port), url, ENV)
    with ReaderStore(dep.state) as store:
        assert isinstance(store, PostgresReaderStore)
        ingest.ingest_sources(store, dep.config, NOW)
    with serving_on(app_for(dep, web_port), web_port) as site:
        client = httpx.Client()
        form = client.get(f"{site}/subscribe")
        answer = client.post(f"{site}/subscribe", data={
            "csrf": csrf(form.text), "email": "Lin@Example.org", "mode": "keywords", "keywords": '"language model"',
            "cadence": "daily", "timezone": "UTC", "action": "subscribe"})
        assert "Check your inbox" in answer.text
        (mail,) = wait_for_mail(recorder, 1)
        confirm = link(mail, "confirm")
        before = dump(url)
        page = httpx.get(confirm)
        assert "Confirm my subscription" in page.text and dump(url) == before
        assert "You are subscribed" in httpx.post(confirm, data={"csrf": csrf(page.text)}).text
        with ReaderStore(url) as store:
            assert store.subscriber(LIN) is not None and store.signup(LIN) is None

        report = dep.send(NOW, fetch=False).report
        assert LIN in report.sent
        digest = next(m[2] for m in recorder.messages if m[1] == [LIN])

        links = Links(dep.config.settings.base_url or "", SECRET)
        manage = links.manage(LIN, 0)
        centre = httpx.get(manage)
        saved = httpx.post(manage, data={"csrf": csrf(centre.text), "action": "save", "mode": "keywords",
                                         "keywords": '"language model"\nquantization', "exclude": "",
                                         "cadence": "daily", "timezone": "UTC", "max_entries": "5"})
        assert "Saved." in saved.text
        with ReaderStore(url) as store:
            sub = store.subscriber(LIN)
            assert sub is not None and sub.keywords == ('"language model"', "quantization")
            paper = next(e for e in store.entries() if e.title.startswith("RegMix"))

        less = links.feedback(LIN, paper.id, LESS)
        before = dump(url)
        shown = httpx.get(less)
        assert "RegMix" in shown.text and dump(url) == before
        assert "Thank you" in httpx.post(less, data={"csrf": csrf(shown.text)}).text
        with ReaderStore(url) as store:
            assert [(r.entry_id, r.verdict) for r in store.ratings(LIN)] == [(paper.id, LESS)]
        assert "including this one" in httpx.get(manage).text  # the proposal, replayed over stored papers

    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    box.add(dsn(LIN, digest))
    box.close()
    with ReaderStore(url) as store:
        summary = bounces.process(store, dep.config, tmp_path / "bounces", NOW)
        assert summary.suppressed == [LIN]
        member = Roster(dep.config, store).member(LIN)
        assert member is not None and member.standing.state == "bounced"
