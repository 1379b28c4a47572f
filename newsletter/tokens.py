"""HMAC-signed unsubscribe tokens: base64url(address) "." base64url(HMAC-SHA256(secret, address)).

Tokens do not expire (an unsubscribe link must keep working); a forged, altered or truncated token
fails verification without revealing whether the address is subscribed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(address: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), b"unsubscribe\n" + address.encode(), hashlib.sha256).digest()
    return f"{_b64(address.encode())}.{_b64(mac)}"


def verify(token: str, secret: str) -> str | None:
    """The address a valid token was made for, else None."""
    head, dot, tail = token.partition(".")
    if not dot or not head or not tail:
        return None
    try:
        address = _unb64(head).decode("utf-8")
        given = _unb64(tail)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    expected = hmac.new(secret.encode(), b"unsubscribe\n" + address.encode(), hashlib.sha256).digest()
    return address if hmac.compare_digest(given, expected) else None
