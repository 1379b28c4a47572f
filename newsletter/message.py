"""Pure: a rendered issue -> one RFC 5322 message (multipart/alternative, UTF-8) with all headers.

No header value is ever taken raw from data: names and titles pass `header_text`, which removes
CR/LF and other controls and breaks `=?` so nothing can decode into a new header line.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import quote

from newsletter.addresses import wire_form
from newsletter.models import RenderedIssue, Settings, Subscriber
from newsletter.rendering import header_text
from newsletter.tokens import sign


@dataclass(frozen=True)
class UnsubscribeLinks:
    https: str | None  # one-click URL (RFC 8058) when base_url is set
    mailto: str | None

    @property
    def visible(self) -> str:
        return self.https or self.mailto or ""


def sender_address(settings: Settings) -> str:
    return parseaddr(settings.sender)[1]


def sender_domain(settings: Settings) -> str:
    return sender_address(settings).rpartition("@")[2] or "localhost"


def unsubscribe_links(settings: Settings, email: str, secret: str) -> UnsubscribeLinks:
    https = f"{settings.base_url}/unsubscribe/{sign(email, secret)}" if settings.base_url else None
    target = settings.unsubscribe_mailto or sender_address(settings)
    mailto = f"mailto:{target}?subject={quote('unsubscribe ' + email)}" if target else None
    return UnsubscribeLinks(https, mailto)


def change_profile_url(settings: Settings, email: str) -> str:
    return f"mailto:{sender_address(settings)}?subject={quote('Change my profile ' + email)}"


def message_id(settings: Settings, issue_id: str) -> str:
    return f"<{issue_id}@{sender_domain(settings)}>"


def list_id(settings: Settings) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", settings.title.lower()).strip("-") or "digest"
    return f"{header_text(settings.title)} <{slug}.{sender_domain(settings)}>"


def _encoded(value: str) -> str:
    """A header value as ASCII: RFC 2047 encoded words only where the text is not ASCII."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=LINE_LIMIT).encode()


def _address(name: str | None, email: str) -> str:
    addr = wire_form(email)
    if addr.isascii():
        return formataddr((header_text(name or ""), addr), charset="utf-8")
    # A UTF-8 local part: the header is UTF-8 too (RFC 6532); only the name is encoded.
    shown = header_text(name or "")
    return f"{_encoded(formataddr((shown, 'x@x'))[: -len(' <x@x>')])} <{addr}>" if shown else addr


def _list_id(settings: Settings) -> str:
    phrase, _, rest = list_id(settings).partition(" <")
    return f"{_encoded(phrase)} <{rest}"


def _qp(text: str) -> bytes:
    """Quoted-printable in C (binascii): the email package's pure-Python encoder is the slow part."""
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)


# RFC 5322 allows 998 characters a line: a long List-Unsubscribe URL stays one readable line.
LINE_LIMIT = 998


def build(rendered: RenderedIssue, settings: Settings, subscriber: Subscriber,
          links: UnsubscribeLinks, date: datetime) -> bytes:
    """The message as bytes (CRLF line ends). Every header value is either a constant, a validated
    address, or text that went through `header_text`; no value can start a new header line."""
    from_name, from_addr = parseaddr(settings.sender)
    boundary = f"=_{rendered.issue.id[:24]}"  # "=_" never occurs in quoted-printable: no collision
    headers = [
        ("From", _address(from_name, from_addr)),
        ("To", _address(subscriber.name, subscriber.email)),
        ("Subject", _encoded(header_text(rendered.subject))),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id(settings, rendered.issue.id)),
        ("List-Id", _list_id(settings)),
    ]
    targets = [f"<{u}>" for u in (links.https, links.mailto) if u]
    if targets:
        headers.append(("List-Unsubscribe", ", ".join(targets)))
    if links.https:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers += [
        ("X-Newsletter-Issue", rendered.issue.id),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{k}: {v}\n" for k, v in headers).encode("utf-8")  # ASCII unless RFC 6532
    part = ('--{b}\nContent-Type: text/{kind}; charset="utf-8"\n'
            "Content-Transfer-Encoding: quoted-printable\n\n")
    body = (part.format(b=boundary, kind="plain").encode() + _qp(rendered.text) + b"\n"
            + part.format(b=boundary, kind="html").encode() + _qp(rendered.html) + b"\n"
            + f"--{boundary}--\n".encode())
    return (head + b"\n" + body).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_bytes(msg: bytes) -> bytes:
    """Kept for callers that build and serialise in two steps."""
    return msg


def message_id_from_bytes(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^Message-ID:\s*(<[^>\r\n]+>)", head, re.I | re.M)
    return m.group(1) if m else None


SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"mime-version", b"content-type")


def dkim_sign(data: bytes, domain: str, selector: str, private_key: bytes) -> bytes:
    """The message with a DKIM-Signature header covering the List-Unsubscribe headers too."""
    import dkim

    present = {line.split(b":", 1)[0].strip().lower() for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
               if line and not line[:1].isspace()}
    headers = [h for h in SIGNED_HEADERS if h in present]
    signature = dkim.sign(data, selector.encode(), domain.encode(), private_key, include_headers=headers,
                          linesep=b"\r\n")
    return signature + data
