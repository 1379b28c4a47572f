"""Golden files: the rendered HTML, text and .eml of a fixed issue, byte for byte.

Regenerate with NEWSLETTER_REGEN_GOLDEN=1 and review the diff before committing.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from conftest import LISTING
from newsletter import message as messagelib
from newsletter.config import loads
from newsletter.issues import build_issue, profile_of
from newsletter.matching import EntryIndex
from newsletter.models import Entry
from newsletter.rendering import render
from newsletter.sources import listing

GOLDEN = Path(__file__).parent / "golden" / "render"
REGEN = os.environ.get("NEWSLETTER_REGEN_GOLDEN") == "1"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
CONFIG = """\
newsletter:
  title: Golden Digest
  sender: "Golden Digest <digest@example.org>"
  base_url: https://digest.example.org
subscribers:
  - email: ada@example.org
    name: Ada Lovelace
    keywords: ['"language model" AND (pre-training OR distillation)', 'title:diffusion']
    exclude: [survey]
    timezone: Europe/London
    max_entries: 4
"""


def _rendered() -> dict[str, bytes]:
    config = loads(CONFIG, Path("subscribers.yaml"), {})
    sub = config.subscribers[0]
    entries = [Entry(**{**e.__dict__, "first_seen": NOW})
               for e in listing.parse(LISTING.read_bytes(), source="listing", today=date(2026, 11, 27))]
    slot = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)
    issue = build_issue(sub, slot, NOW, EntryIndex(entries), since=datetime(2026, 11, 26, tzinfo=timezone.utc),
                        delivered=(), first=True, profile=profile_of(sub))
    links = messagelib.unsubscribe_links(config.settings, sub.email, "golden-secret")
    r = render(issue, config.settings, unsubscribe_url=links.visible,
               change_url=messagelib.change_profile_url(config.settings, sub.email))
    eml = messagelib.to_bytes(messagelib.build(r, config.settings, sub, links, NOW))
    return {"ada.html": r.html.encode(), "ada.txt": r.text.encode(), "ada.eml": eml}


@pytest.mark.parametrize("name", ["ada.html", "ada.txt", "ada.eml"])
def test_rendering_matches_the_golden_file(name: str) -> None:
    out = _rendered()[name]
    golden = GOLDEN / name
    if REGEN:
        golden.write_bytes(out)
    assert out == golden.read_bytes(), f"{name} changed: run with NEWSLETTER_REGEN_GOLDEN=1 and review the diff"


def test_rendering_is_deterministic() -> None:
    assert _rendered() == _rendered()


def test_the_message_parts_decode_to_exactly_what_was_rendered() -> None:
    from email import message_from_bytes, policy

    out = _rendered()
    msg = message_from_bytes(out["ada.eml"], policy=policy.default)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == out["ada.txt"].decode()
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == out["ada.html"].decode()
    lines = out["ada.eml"].split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)  # CRLF only
    assert max(len(line) for line in lines) <= 998
    body_lines = out["ada.eml"].split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76  # quoted-printable soft line breaks
