"""The message itself: identity (Message-ID, List-Id), DKIM that an added header breaks, header line
limits and folding, auto-responder headers, wire form (CRLF, dot-safe quoted-printable)."""

from __future__ import annotations

import json
import quopri
import re
import subprocess
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter import message as messagelib
from newsletter.assembly import qp
from newsletter.config import loads
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Entry, Issue, Links, RenderedIssue
from newsletter.rendering import render

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)
ENTRY = Entry(id="2401.00001", title="A paper on language models", abstract="We train a language model.",
              links=Links(page="https://huggingface.co/papers/2401.00001"))


def config(newsletter: dict[str, Any] | None = None, subscriber: dict[str, Any] | None = None) -> Config:
    data = {
        "newsletter": {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                       "base_url": "https://digest.example.org", **(newsletter or {})},
        "subscribers": [{"email": "ada@example.org", "name": "Ada", "keywords": ["language model"],
                         **(subscriber or {})}],
    }
    return loads(yaml.safe_dump(data, allow_unicode=True), Path("subscribers.yaml"), {})


def message(cfg: Config, entries: tuple[Entry, ...] = (ENTRY,), issue_id: str = "issue1") -> bytes:
    sub = cfg.subscribers[0]
    matches = EntryIndex(entries).select(Profile.from_strings(sub.keywords))
    issue = Issue(id=issue_id, subscriber=sub, slot=NOW, built_at=NOW, matches=tuple(matches))
    links = messagelib.unsubscribe_links(cfg.settings, sub.email, "s3cret")
    r = render(issue, cfg.settings, unsubscribe_url=links.visible,
               change_url=messagelib.change_profile_url(cfg.settings, sub.email))
    return messagelib.to_bytes(messagelib.build(r, cfg.settings, sub, links, NOW))


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- identity ---------------------------------------------------------------------------------

def _message_id(raw: bytes) -> str | None:
    return message_from_bytes(raw, policy=policy.default)["Message-ID"]


def test_two_lists_on_one_domain_give_distinct_message_ids_that_rebuilds_keep() -> None:
    ml = config({"title": "ML papers", "sender": "ML papers <ml@lab.example.org>"})
    stats = config({"title": "Stats papers", "sender": "Stats papers <stats@lab.example.org>"})
    same_title = config({"title": "ML papers", "sender": "ML papers <stats@lab.example.org>"})
    ids = [_message_id(message(c)) for c in (ml, stats, same_title)]
    assert len(set(ids)) == 3, ids  # same subscriber, same slot, same issue id: three lists
    assert all(i and i.endswith("@lab.example.org>") for i in ids)
    assert _message_id(message(ml)) == ids[0]  # deterministic across rebuilds
    assert _message_id(message(ml, issue_id="issue2")) != ids[0]


def test_an_international_sender_domain_reaches_the_headers_as_idna() -> None:
    cfg = config({"title": "Bücher Überblick", "sender": "Bücher <digest@bücher.example>"})
    head = header_block(message(cfg))
    assert head.isascii()  # List-Id, Message-ID and From: no raw 8-bit text
    assert b"@xn--bcher-kva.example>" in head
    msg = message_from_bytes(message(cfg), policy=policy.default)
    assert msg["List-Id"] == "Bücher Überblick <b-cher-berblick.xn--bcher-kva.example>"


# --- header lines -----------------------------------------------------------------------------

LONG = "Zürich " * 300  # 2,100 characters, non-ASCII


@pytest.mark.parametrize(("where", "value"), [
    ("title", LONG), ("title", "Deep " * 400), ("title", "x" * 3000),
    ("name", LONG), ("name", "Ada " * 500), ("name", "A" * 2000),
    ("entry", "word " * 500), ("entry", "Ünïcödé" * 400),
])
def test_no_header_line_passes_998_octets_and_values_survive_folding(where: str, value: str) -> None:
    title = value if where == "title" else "Test Digest"
    name = value if where == "name" else "Ada"
    entry = Entry(id="x", title=f"language model {value}" if where == "entry" else ENTRY.title)
    raw = message(config({"title": title, "sender": "Digest <digest@example.org>"}, {"name": name}), (entry,))
    for line in header_block(raw).split(b"\r\n"):
        assert len(line) <= 998, line[:80]
    for line in header_block(raw).split(b"\r\n"):
        if not line[:1].isspace() and not line.startswith(b"List-Unsubscribe"):
            assert len(line) <= 78, line
    msg = message_from_bytes(raw, policy=policy.default)
    assert len(msg.defects) == 0 and all(not h.defects for h in msg.values())  # type: ignore[attr-defined]
    shown = " ".join(value.split())
    if where == "name":
        assert decoded(raw, "To") == f"{shown} <ada@example.org>"
        assert msg["To"].addresses[0].addr_spec == "ada@example.org"
    if where == "title":
        assert decoded(raw, "List-Id").startswith(f"{shown} <")
        assert decoded(raw, "Subject").startswith(f"{shown} · ")
    if where == "entry":
        assert msg["Subject"].endswith("1 new paper")


def decoded(raw: bytes, name: str) -> str:
    """A header as RFC 2047 reads it: white space between adjacent encoded words is dropped (the
    email package's address parser keeps it, unlike mail clients)."""
    found = re.search(rb"^" + name.encode() + rb": (.*?)\r\n(?! )", header_block(raw) + b"\r\n", re.M | re.S)
    assert found
    return str(make_header(decode_header(found.group(1).replace(b"\r\n", b"").decode())))


def test_auto_responders_are_told_it_is_bulk() -> None:
    msg = message_from_bytes(message(config()), policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Precedence"] == "bulk"


# --- wire form --------------------------------------------------------------------------------

def test_the_message_is_in_wire_form_crlf_and_dot_safe() -> None:
    dots = Entry(id="d", title="language model", abstract=". " + ("x" * 74 + ".y ") * 30 + "\n.\n.hidden")
    raw = message(config(), (dots,))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r\n." not in raw and not raw.startswith(b".")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    msg = message_from_bytes(raw, policy=policy.default)
    text = msg.get_body(("plain",)).get_content()
    assert ".y" in text and "x" * 74 in text


def test_a_rendered_issue_given_whole_strings_holds_each_as_one_piece() -> None:
    """Not one piece per character (each joined by a soft line break: four times the bytes)."""
    r = RenderedIssue(cast(Issue, None), "S", "P", html_pieces="<p>a b</p>", text_pieces="a b\n")
    assert (r.html_pieces, r.text_pieces, r.html, r.text) == (("<p>a b</p>",), ("a b\n",), "<p>a b</p>", "a b\n")
    assert messagelib.qp_pieces(r.text_pieces) == qp("a b\n")


@pytest.mark.parametrize("text", [
    ".", ".\n", "a\n.\nb", "." * 200, ("." + "y" * 74 + ".") * 5 + "\n", ("z" * 74 + "=.") * 10,
    "é" * 40 + "\n." + "é" * 40, "\n".join("." * n for n in range(1, 90)),
])
def test_quoted_printable_round_trips_without_a_line_starting_with_a_dot(text: str) -> None:
    out = qp(text)
    assert not out.startswith(b".") and b"\n." not in out
    assert max(len(line) for line in out.split(b"\r\n")) <= 76
    assert quopri.decodestring(out).decode() == text.replace("\n", "\r\n")


# --- DKIM -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d = tmp_path_factory.mktemp("dkim")
    subprocess.run(["openssl", "genrsa", "-out", "k.pem", "2048"], cwd=d, check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", "k.pem", "-pubout", "-out", "k.pub"], cwd=d, check=True,
                   capture_output=True)
    public = b"".join(x for x in (d / "k.pub").read_bytes().splitlines() if b"-----" not in x)
    return (d / "k.pem").read_bytes(), b"v=DKIM1; k=rsa; p=" + public


def _verify(raw: bytes, record: bytes) -> bool:
    import dkim

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return record

    return bool(dkim.verify(raw, dnsfunc=dns))


def _signed(key: bytes) -> bytes:
    return messagelib.dkim_sign(message(config()), "example.org", "s1", key)


@pytest.mark.parametrize("added", [
    b"List-Unsubscribe: <https://evil.example.net/x>",
    b"Subject: Your account is locked",
    b"Reply-To: evil@example.net",
    b"From: Bank <bank@example.net>",
    b"Cc: evil@example.net",
    b"Content-Type: text/plain",
])
def test_a_prepended_or_added_header_breaks_the_signature(dkim_key: tuple[bytes, bytes], added: bytes) -> None:
    key, record = dkim_key
    raw = _signed(key)
    assert _verify(raw, record)
    assert not _verify(added + b"\r\n" + raw, record)  # prepended above the signature
    sig_end = raw.index(b"\r\nFrom:") + 2
    assert not _verify(raw[:sig_end] + added + b"\r\n" + raw[sig_end:], record)  # after it
    head, body = raw.split(b"\r\n\r\n", 1)
    assert not _verify(head + b"\r\n" + added + b"\r\n\r\n" + body, record)  # appended


def test_signature_is_relaxed_both_ways_so_relays_rewhitespacing_does_not_break_it(
        dkim_key: tuple[bytes, bytes]) -> None:
    key, record = dkim_key
    raw = _signed(key)
    assert b"c=relaxed/relaxed" in raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    head, body = raw.split(b"\r\n\r\n", 1)
    spaced = head + b"\r\n\r\n" + re.sub(rb"(?<!=)\r\n", b"   \r\n", body)  # trailing spaces on body lines
    assert spaced != raw and _verify(spaced, record)
    assert not _verify(head + b"\r\n\r\n" + body.replace(b"language", b"lenguage", 1), record)


def test_a_message_built_from_shared_pieces_decodes_to_the_rendered_parts() -> None:
    from newsletter.rendering import SlotRenderer

    cfg = config()
    renderer = SlotRenderer(cfg.settings)
    entries = tuple(Entry(id=f"e{i}", title=f"language model {i}", abstract=". language model " * (i * 9))
                    for i in range(12))
    matches = EntryIndex(entries).select(Profile.from_strings(cfg.subscribers[0].keywords))
    for k in range(3):  # the second and third reuse the pieces' encoded form
        issue = Issue(id=f"i{k}", subscriber=cfg.subscribers[0], slot=NOW, built_at=NOW, matches=tuple(matches))
        r = renderer.render(issue, unsubscribe_url="https://u.example/x", change_url="mailto:c@example.org")
        assert len(r.html_pieces) > 10
        raw = messagelib.build(r, cfg.settings, cfg.subscribers[0], messagelib.UnsubscribeLinks(None, None), NOW)
        assert b"\r\n." not in raw and b"\n" not in raw.replace(b"\r\n", b"")
        assert max(len(line) for line in raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")) <= 76
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == r.html
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == r.text


def _address_cases() -> list[str]:
    cases = json.loads((Path(__file__).parent / "data" / "email_validator_syntax_cases.json").read_text())
    return [c["email_input"] for k, v in cases.items() if k.startswith("test_") and isinstance(v, list)
            for c in v if isinstance(c, dict) and "email_input" in c]


@pytest.mark.parametrize("text", [*_address_cases(), "a@b", "a@@b", "@b", "a@", "", "a b@c", "a/b@c", "a+b@c.d",
                                  "a~b_c.d-e@x-y.z", "Ünïcode@exämple.org", "a@b@c"])
def test_an_address_in_a_subject_is_quoted_as_urllib_quotes_it(text: str) -> None:
    """`quoted` has a shortcut for plain addresses: whatever the address, the same as `quote`."""
    assert messagelib.quoted(text) == quote(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09_.~-@+/ %é\n"), max_size=12))
def test_any_text_is_quoted_as_urllib_quotes_it(text: str) -> None:
    assert messagelib.quoted(text) == quote(text)
