"""Pure: a rendered issue -> one RFC 5322 message (multipart/alternative, UTF-8) with all headers.

No header value is ever taken raw from data: names and titles pass `header_text`, which removes
CR/LF and other controls and breaks `=?` so nothing can decode into a new header line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

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


def _address(name: str | None, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=header_text(name or ""), username=local, domain=domain)


# RFC 5322 allows 998 characters a line. With the default 78 Python would fold a long
# List-Unsubscribe URL into encoded words, which mailbox providers do not read as a URL.
POLICY = policy.SMTP.clone(max_line_length=998)


def build(rendered: RenderedIssue, settings: Settings, subscriber: Subscriber,
          links: UnsubscribeLinks, date: datetime) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    from_name, from_addr = parseaddr(settings.sender)
    msg["From"] = _address(from_name, from_addr)
    msg["To"] = _address(subscriber.name, subscriber.email)
    msg["Subject"] = header_text(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id(settings, rendered.issue.id)
    msg["List-Id"] = list_id(settings)
    targets = [f"<{u}>" for u in (links.https, links.mailto) if u]
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if links.https:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Newsletter-Issue"] = rendered.issue.id
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary from the issue id keeps the message byte-for-byte reproducible; "=_" can never
    # occur in quoted-printable parts, so it cannot collide with the content.
    msg.set_boundary(f"=_{rendered.issue.id[:24]}")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)


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
