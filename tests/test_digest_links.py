"""The links every digest carries when there is a web service (issue 12): the preference centre,
the issue on the web, and "more / less like this" under each paper, all signed. Taken from the
mails a real SMTP server received and followed against the real reader app."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import yaml

from conftest import Recorder, free_port
from newsletter.links import MORE
from newsletter.store_readers import ReaderStore
from readers_kit import NOW, csrf, dump, open_project, serving_on, app_for, write_project, body


def _digest(recorder: Recorder) -> tuple[EmailMessage, str]:
    ((_, _, raw),) = recorder.messages
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    html = msg.get_body(("html",))
    assert html is not None
    return msg, str(html.get_content())


def test_a_digest_links_each_paper_its_issue_and_the_preference_centre(
        tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    web_port = free_port()
    dep = open_project(write_project(tmp_path, smtp_port, web_port))
    dep.send(NOW, fetch=False)
    msg, html = _digest(recorder)
    text = body(msg)
    issue_id = str(msg["X-Newsletter-Issue"])
    with ReaderStore(dep.state) as store:
        papers = [e.id for e in store.issue_entries(issue_id)]
    assert papers
    base = f"http://127.0.0.1:{web_port}"
    rate = re.findall(rf"{re.escape(base)}/rate/[A-Za-z0-9_.-]+/(more|less)/(\S+)", text)
    # both verdicts for every paper of the issue, in the text part and the HTML part alike
    assert sorted(rate) == sorted([(v, p) for p in papers for v in ("more", "less")])
    assert all(f'/more/{p}"' in html and f'/less/{p}"' in html for p in papers)
    manage = re.search(rf"{re.escape(base)}/manage/\S+", text)
    view = re.search(rf"{re.escape(base)}/view/\S+", text)
    assert manage and view and manage.group(0) in html and view.group(0) in html
    more = re.search(rf"{re.escape(base)}/rate/\S+/more/{re.escape(papers[0])}", text)
    assert more
    before = dump(dep.state)
    with serving_on(app_for(dep, web_port), web_port), httpx.Client() as client:
        assert "ada@example.org" in client.get(manage.group(0)).text  # the preference centre, for Ada
        assert client.get(view.group(0)).status_code == 200
        page = client.get(more.group(0))  # a GET shows what would be recorded, and records nothing
        assert page.status_code == 200 and "More like this?" in page.text
        assert dump(dep.state) == before
        # another paper than the issue carried, or an altered signature: the one refusal
        token = more.group(0).split("/rate/")[1].split("/")[0]
        for forged in (f"{base}/rate/{token}/more/2611.99999", f"{base}/rate/{token[:-2]}xx/more/{papers[0]}",
                       f"{base}/rate/{token}/sideways/{papers[0]}"):
            refused = client.get(forged)
            assert refused.status_code == 400 and "This link is not valid" in refused.text, forged
        assert client.post(more.group(0), data={"csrf": "forged"}).status_code != 200
        done = client.post(more.group(0), data={"csrf": csrf(page.text)})  # the page's own form
    assert done.status_code == 200 and "Recorded: more like" in done.text
    with ReaderStore(dep.state) as store:
        ((rating),) = store.ratings("ada@example.org")
    assert (rating.entry_id, rating.issue_id, rating.verdict) == (papers[0], issue_id, MORE)


def test_without_a_web_service_a_digest_has_no_web_links(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> None:
    recorder, smtp_port = smtp_server
    path = write_project(tmp_path, smtp_port, free_port())
    doc = yaml.safe_load(path.read_text())
    del doc["newsletter"]["base_url"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    dep = open_project(path)
    dep.send(NOW, fetch=False)
    msg, html = _digest(recorder)
    for kind in ("/rate/", "/manage/", "/view/"):
        assert kind not in html and kind not in body(msg)
    assert "mailto:" in html  # the profile is changed by writing to the sender
