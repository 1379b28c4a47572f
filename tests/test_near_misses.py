"""The optional "near misses" line (issue 16): with `near_misses: true`, an issue ends with up to three
papers that missed the profile by one clause, each with the clause, in the text and the HTML part;
without it, nothing. Real SMTP server, real store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import yaml

from conftest import Recorder
from newsletter.deployment import Deployment
from newsletter.models import Entry, Links
from newsletter.store import Store

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
QUERY = '"language model" AND quantization'


def _paper(n: int, title: str, abstract: str, upvotes: int) -> Entry:
    return Entry(id=f"2611.{n:05d}", title=title, abstract=abstract, authors=("A. Author",), upvotes=upvotes,
                 links=Links(page=f"https://example.org/p/{n}"), sources=("t",))


HIT = _paper(1, "Quantization of a language model", "We quantize.", 10)
SURVEY = _paper(2, "A survey of language model quantization", "We review quantization.", 30)
HALF = _paper(3, "A language model for chemistry", "No compression here.", 20)
FAR = _paper(4, "Protein folding", "Nothing related.", 99)


def _parts(raw: bytes) -> tuple[str, str]:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()).replace("\r\n", "\n"), str(html.get_content())


def test_an_issue_ends_with_the_papers_that_missed_by_one_clause(tmp_path: Path,
                                                                 smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    base = {"keywords": [QUERY], "exclude": ["title:survey"], "send_empty": True}
    doc = {"newsletter": {"title": "T", "sender": "T <t@example.org>", "schedule": "0 7 * * *",
                          "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 5}},
           "subscribers": [{"email": "near@example.org", "near_misses": True, **base},
                           {"email": "plain@example.org", **base}]}
    path = tmp_path / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    dep = Deployment.open(path, None, {})
    with Store(dep.state) as store:
        store.upsert_entries([HIT, SURVEY, HALF, FAR], NOW - timedelta(hours=3))
    assert sorted(dep.send(NOW, fetch=False).report.sent) == ["near@example.org", "plain@example.org"]
    mails = {rcpts[0]: _parts(raw) for _, rcpts, raw in recorder.messages}
    text, html = mails["near@example.org"]
    assert "Near misses: papers that missed your profile by one clause" in text
    # most upvoted first; the paper the issue carries and the unrelated one are not there
    assert (" - A survey of language model quantization (excluded by NOT\n   title:survey)\n"
            "   https://example.org/p/2") in text
    assert (' - A language model for chemistry (lacks quantization, in "language\n'
            '   model" AND quantization)\n   https://example.org/p/3') in text
    assert text.index("survey of language model") < text.index("for chemistry")
    assert "Protein folding" not in text and text.count("Quantization of a language model") == 1
    assert '<a href="https://example.org/p/2">A survey of language model quantization</a> · excluded by NOT ' \
           "title:survey" in html
    assert "lacks quantization, in &#34;language model&#34; AND quantization" in html or \
        "lacks quantization, in &quot;language model&quot; AND quantization" in html
    plain_text, plain_html = mails["plain@example.org"]
    assert "Near misses" not in plain_text and "Near misses" not in plain_html


def test_near_misses_assemble_to_the_same_bytes_as_rendering_alone() -> None:
    """Issues of one shape are filled from a plan after the first two: the near-miss lines too."""
    from dataclasses import replace

    from newsletter.matching import EntryIndex, Profile
    from newsletter.models import Issue, Settings, SmtpConfig, Subscriber
    from newsletter.nearmiss import NearMiss
    from newsletter.rendering import SlotRenderer, environment, render

    settings = Settings(title="T", sender="T <t@example.org>", base_url=None, sources=(), schedule="0 7 * * *",
                        timezone="UTC", max_entries=5, send_empty=True, min_upvotes=0, smtp=SmtpConfig(),
                        templates=None, unsubscribe_mailto=None)
    shared = SlotRenderer(settings, environment(None))
    env = environment(None)
    matches = tuple(EntryIndex([HIT, SURVEY, HALF]).select(Profile.from_strings([QUERY])))
    for k in range(6):
        sub = Subscriber(f"r{k}@example.org", f"Reader {k}", (QUERY,), (), "0 7 * * *", "UTC", 5, 0, True,
                         near_misses=True)
        issue = Issue(f"i{k}", sub, NOW, NOW, matches[:1], near=(NearMiss(SURVEY, f"excluded by NOT x{k}"),
                                                                NearMiss(HALF, "lacks quantization")))
        fast = shared.render(issue, unsubscribe_url=f"https://u/{k}", change_url=f"https://c/{k}")
        alone = render(replace(issue), settings, unsubscribe_url=f"https://u/{k}", change_url=f"https://c/{k}",
                       env=env)
        assert (fast.html, fast.text) == (alone.html, alone.text)
        assert f"excluded by NOT x{k}" in fast.text and f"excluded by NOT x{k}" in fast.html
    assert any(not isinstance(p, int) for p in shared._plans.values())  # the later ones came from a plan
