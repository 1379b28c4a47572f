"""Signed link tokens: purpose-bound, strict, expiring where asked, rotatable secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from newsletter import tokens
from newsletter.tokens import Purpose, check, make

SECRET = "current-secret-0123456789abcdef"
OLD = "previous-secret-fedcba9876543210"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def test_a_token_gives_back_its_subject_for_its_purpose() -> None:
    token = make(Purpose.MANAGE, "zoë@exämple.org", SECRET)
    assert check(token, Purpose.MANAGE, [SECRET], NOW) == "zoë@exämple.org"


def test_unsubscribe_links_already_sent_stay_valid() -> None:
    """The format before purposes and expiry: base64url(address) "." base64url(HMAC("unsubscribe\\n" address))."""
    address = "ada@example.org"
    mac = hmac.new(SECRET.encode(), b"unsubscribe\n" + address.encode(), hashlib.sha256).digest()
    b64 = base64.urlsafe_b64encode
    old = f"{b64(address.encode()).rstrip(b'=').decode()}.{b64(mac).rstrip(b'=').decode()}"
    assert tokens.sign(address, SECRET) == old
    assert tokens.verify(old, SECRET) == address
    assert check(old, Purpose.UNSUBSCRIBE, [SECRET], NOW) == address


@given(st.text(max_size=200), st.binary(max_size=300))
@example("", b"")
@example("k" * 63, b"x")
@example("k" * 64, b"x")
@example("k" * 65, b"x")
@example("é" * 32, b"x")
@example("é" * 33, b"x")
def test_the_mac_is_hmac_sha256_for_any_secret(secret: str, text: bytes) -> None:
    """Tokens are keyed once per secret (tokens._keyed); the MAC is still the standard library's HMAC,
    for secrets shorter and longer than SHA-256's block (the key is hashed first)."""
    mac = tokens._mac(secret, Purpose.VIEW, text, None)
    assert mac == hmac.new(secret.encode(), b"view\n" + text, hashlib.sha256).digest()
    again = tokens._mac(secret, Purpose.VIEW, text, "1800000000")
    assert again == hmac.new(secret.encode(), b"v2\0view\x001800000000\0" + text, hashlib.sha256).digest()


def _other_spelling(token: str) -> str:
    """The same subject bytes with the unused low bits of the last character set (16 bytes: 4 spare bits)."""
    head, tail = token.split(".")
    return head[:-1] + chr(ord(head[-1]) + 1) + "." + tail


def _bad_tokens() -> dict[str, str]:
    good = make(Purpose.UNSUBSCRIBE, "ada@example.org", SECRET)
    head, tail = good.split(".")
    return {
        "forged": make(Purpose.UNSUBSCRIBE, "ada@example.org", "guessed-secret"),
        "altered subject": make(Purpose.UNSUBSCRIBE, "eve@example.org", SECRET).split(".")[0] + "." + tail,
        "altered mac": head + "." + tail[:-2] + ("AA" if not tail.endswith("AA") else "BA"),
        "truncated": good[: len(good) // 2],
        "mac cut short": good[:-1],
        "padded": good + "==",
        "padded inside": head + "=." + tail,
        "inserted junk": head[:3] + "!~*(" + head[3:] + "." + tail,
        "standard alphabet": good.replace("-", "+").replace("_", "/") if ("-" in good or "_" in good) else "+" + good,
        "whitespace": head + ". " + tail,
        "other spelling": _other_spelling(make(Purpose.UNSUBSCRIBE, "ada1@example.org", SECRET)),
        "wrong purpose": make(Purpose.CONFIRM, "ada@example.org", SECRET),
        "expired": make(Purpose.UNSUBSCRIBE, "ada@example.org", SECRET, expires=NOW - timedelta(seconds=1)),
        "extra part": good + ".AAAA",
        "empty": "",
        "dot": ".",
        "huge": "A" * 5000 + "." + tail,
    }


@pytest.mark.parametrize("kind", list(_bad_tokens()))
def test_every_bad_token_gets_the_same_refusal(kind: str) -> None:
    token = _bad_tokens()[kind]
    assert check(token, Purpose.UNSUBSCRIBE, [SECRET], NOW) is None
    assert tokens.verify(token, SECRET) is None


def test_the_other_spelling_really_decodes_to_the_same_bytes() -> None:
    """So the strictness test above tests strictness, not a changed subject."""
    good = make(Purpose.UNSUBSCRIBE, "ada1@example.org", SECRET)
    head = good.split(".")[0]
    other = _bad_tokens()["other spelling"].split(".")[0]
    pad = "=" * (-len(head) % 4)
    assert head != other and base64.urlsafe_b64decode(head + pad) == base64.urlsafe_b64decode(other + pad)


def test_an_unsubscribe_token_opens_nothing_else() -> None:
    token = tokens.sign("ada@example.org", SECRET)
    for purpose in Purpose:
        expected = "ada@example.org" if purpose is Purpose.UNSUBSCRIBE else None
        assert check(token, purpose, [SECRET], NOW) == expected


def test_expiry_is_signed_and_enforced() -> None:
    token = make(Purpose.CONFIRM, "ada@example.org", SECRET, expires=NOW + timedelta(hours=48))
    assert check(token, Purpose.CONFIRM, [SECRET], NOW + timedelta(hours=47)) == "ada@example.org"
    assert check(token, Purpose.CONFIRM, [SECRET], NOW + timedelta(hours=48)) is None
    head, seconds, tail = token.split(".")
    later = f"{head}.{int(seconds) + 86400}.{tail}"  # pushing the expiry breaks the signature
    assert check(later, Purpose.CONFIRM, [SECRET], NOW) is None
    assert check(f"{head}.0{seconds}.{tail}", Purpose.CONFIRM, [SECRET], NOW) is None
    assert check(f"{head}.{tail}", Purpose.CONFIRM, [SECRET], NOW) is None  # the expiry cannot be dropped


def test_a_token_with_an_expiry_is_never_an_unsubscribe_token_for_verify() -> None:
    token = make(Purpose.UNSUBSCRIBE, "ada@example.org", SECRET, expires=NOW + timedelta(days=3650))
    assert check(token, Purpose.UNSUBSCRIBE, [SECRET], NOW) == "ada@example.org"
    assert tokens.verify(token, SECRET) is None


def test_rotation_accepts_the_previous_secret_until_it_is_dropped() -> None:
    old_link = tokens.sign("ada@example.org", OLD)
    assert check(old_link, Purpose.UNSUBSCRIBE, [SECRET, OLD], NOW) == "ada@example.org"
    assert tokens.verify(old_link, [SECRET, OLD]) == "ada@example.org"
    assert check(old_link, Purpose.UNSUBSCRIBE, [SECRET], NOW) is None
    assert check(old_link, Purpose.UNSUBSCRIBE, [], NOW) is None


@given(st.text(min_size=1, max_size=40), st.integers(min_value=0), st.characters(codec="ascii"))
def test_changing_any_one_character_invalidates_a_token(subject: str, where: int, char: str) -> None:
    token = make(Purpose.MANAGE, subject, SECRET)
    i = where % len(token)
    changed = token[:i] + char + token[i + 1:]
    if changed != token:
        assert check(changed, Purpose.MANAGE, [SECRET], NOW) is None
