"""Signed tokens for links in emails: an HMAC-SHA256 bound to a purpose, a subject and an optional expiry.

A token is `base64url(subject) "." base64url(mac)`, or with an expiry `base64url(subject) "." seconds
"." base64url(mac)`. Decoding is strict (no padding, no other alphabet, one encoding per value), the
comparison is constant-time, and every failure (forged, altered, truncated, expired, wrong purpose)
is the same `None`: a caller cannot tell them apart, so neither can whoever holds the link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Any


class Purpose(StrEnum):
    """What a token lets its holder do; a token made for one purpose verifies for no other."""

    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"  # a sign-up's double opt-in
    MANAGE = "manage"  # the preference centre
    FEEDBACK = "feedback"  # "more / less like this" on one paper of one digest
    VIEW = "view"  # one issue on the web
    FEED = "feed"  # a subscriber's private Atom feed
    FORM = "form"  # the anti-forgery token a page puts in its own form


MAX_TOKEN = 1024  # characters: longer is never ours, and is refused before any decoding
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_SECONDS = re.compile(r"[1-9][0-9]{0,11}")
_MAC_CHARS = 43  # 32 bytes in unpadded base64url


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """Strict unpadded base64url: only the alphabet, and only the one canonical spelling of a value."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64(data) == text else None  # unused trailing bits set: another spelling


def _mac(secret: str, purpose: Purpose, subject: bytes, expires: str | None) -> bytes:
    # Without an expiry the signed text is "purpose\nsubject", which keeps every unsubscribe link
    # already sent valid; with one it starts with a NUL-separated prefix no purpose can produce.
    if expires is None:
        text = purpose.value.encode() + b"\n" + subject
    else:
        text = b"v2\0" + purpose.value.encode() + b"\0" + expires.encode() + b"\0" + subject
    inner, outer = _keyed(secret)
    inner, outer = inner.copy(), outer.copy()
    inner.update(text)
    outer.update(inner.digest())
    return outer.digest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_BLOCK = hashlib.sha256().block_size


@lru_cache(maxsize=16)
def _keyed(secret: str) -> tuple[Any, Any]:
    """HMAC-SHA256 (RFC 2104, as `hmac` computes it) keyed once per secret: the inner and outer
    hash states after the padded key, which each token copies (every message carries four tokens;
    `hmac.new` would pad and hash the key again for each)."""
    key = secret.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def make(purpose: Purpose, subject: str, secret: str, *, expires: datetime | None = None) -> str:
    """A token for `subject` that `check` accepts for this purpose only (until `expires`, if given)."""
    data = subject.encode()
    if expires is None:
        return f"{_b64(data)}.{_b64(_mac(secret, purpose, data, None))}"
    seconds = str(int(expires.timestamp()))
    return f"{_b64(data)}.{seconds}.{_b64(_mac(secret, purpose, data, seconds))}"


def check(token: str, purpose: Purpose, secrets: Sequence[str], now: datetime) -> str | None:
    """The subject of a valid, unexpired token for this purpose signed with any of `secrets`
    (the current one first, then earlier ones still honoured), else None."""
    if len(token) > MAX_TOKEN or not secrets:
        return None
    parts = token.split(".")
    if len(parts) == 2:
        head, expires, tail = parts[0], None, parts[1]
    elif len(parts) == 3 and _SECONDS.fullmatch(parts[1]):
        head, expires, tail = parts
    else:
        return None
    subject = _unb64(head)
    given = _unb64(tail) if len(tail) == _MAC_CHARS else None
    if subject is None or given is None:
        return None
    matched = False
    for secret in secrets:  # no early exit: the time taken does not say which secret matched
        matched |= hmac.compare_digest(given, _mac(secret, purpose, subject, expires))
    if not matched:
        return None
    if expires is not None and now >= datetime.fromtimestamp(int(expires), timezone.utc):
        return None
    try:
        return subject.decode("utf-8")
    except UnicodeDecodeError:
        return None


def sign(address: str, secret: str) -> str:
    """An unsubscribe token for `address`; it never expires (an unsubscribe link must keep working)."""
    return make(Purpose.UNSUBSCRIBE, address, secret)


def verify(token: str, secret: str | Sequence[str]) -> str | None:
    """The address an unsubscribe token (as `sign` makes them: no expiry) was made for, else None."""
    if token.count(".") != 1:
        return None  # an unsubscribe token never expires, so it never carries an expiry
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return check(token, Purpose.UNSUBSCRIBE, secrets, _NEVER)


_NEVER = datetime.min.replace(tzinfo=timezone.utc)  # `now` for tokens that cannot expire
