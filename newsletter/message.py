"""Pure: a rendered issue -> one RFC 5322 message (multipart/alternative, UTF-8) in wire form.

No header value is ever taken raw from data: names and titles pass `header_text`, which removes
CR/LF and other controls and breaks `=?` so nothing can decode into a new header line. Every header
line is at most 998 octets (folded at white space, or as RFC 2047 encoded words); the body is
quoted-printable with CRLF line ends and no line that starts with "." (SMTP needs no dot-stuffing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from urllib.parse import quote

from newsletter.addresses import wire_form
from newsletter.models import RenderedIssue, Settings, Subscriber
from newsletter.assembly import encoded
from newsletter.rendering import header_text
from newsletter.tokens import sign

# RFC 5322 2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
SOFT_LIMIT = 78
LINE_LIMIT = 998
CRLF = "\r\n"


@dataclass(frozen=True)
class UnsubscribeLinks:
    https: str | None  # one-click URL (RFC 8058) when base_url is set
    mailto: str | None

    @property
    def visible(self) -> str:
        return self.https or self.mailto or ""


def sender_address(settings: Settings) -> str:
    return _parsed(settings.sender)[1]


@lru_cache(maxsize=64)
def _parsed(sender: str) -> tuple[str, str]:
    return parseaddr(sender)  # the email package's parser is slow; a list has one sender


def sender_domain(settings: Settings) -> str:
    """The sender's domain in its ASCII (IDNA) form: it goes into Message-ID and List-Id."""
    return wire_form(sender_address(settings)).rpartition("@")[2] or "localhost"


@lru_cache(maxsize=64)  # the list's own address, in every message
def _mailto(address: str) -> str:
    """An address inside a mailto: URI (RFC 6068): IDNA domain, any other non-ASCII percent-encoded."""
    return quote(wire_form(address), safe="@!$'()*+,;=")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")  # what `quote` leaves as it is (and "/")


def quoted(text: str) -> str:
    """`urllib.parse.quote(text)`, quicker for the usual address (letters, digits, "_.~-", one "@")."""
    local, at, domain = text.partition("@")
    if at and _UNRESERVED.fullmatch(local) and _UNRESERVED.fullmatch(domain):
        return f"{local}%40{domain}"
    return quote(text)


def unsubscribe_links(settings: Settings, email: str, secret: str) -> UnsubscribeLinks:
    https = f"{settings.base_url}/unsubscribe/{sign(email, secret)}" if settings.base_url else None
    target = settings.unsubscribe_mailto or sender_address(settings)
    mailto = f"mailto:{_mailto(target)}?subject=unsubscribe%20{quoted(email)}" if target else None
    return UnsubscribeLinks(https, mailto)


def change_profile_url(settings: Settings, email: str) -> str:
    return f"mailto:{_mailto(sender_address(settings))}?subject=Change%20my%20profile%20{quoted(email)}"


def list_identity(settings: Settings) -> str:
    """What tells two lists apart, even on one domain: the sender's address and the List-Id."""
    return f"{sender_address(settings).lower()}\n{list_id(settings)}"


def message_id(settings: Settings, issue_id: str) -> str:
    """Unique per list, subscriber and slot, and the same on every rebuild of that issue: the issue
    id (subscriber + slot) plus a digest of the list's identity."""
    return f"<{issue_id}.{_list_tag(settings)}>"


_PER_LIST: dict[tuple[str, str, str], str] = {}


def _per_list(settings: Settings, what: str, make: Callable[[Settings], str]) -> str:
    """A header part that depends only on the list's sender and title, made once per list (every
    message of a slot has the same)."""
    key = (what, settings.sender, settings.title)
    found = _PER_LIST.get(key)
    if found is None:
        if len(_PER_LIST) >= 128:
            _PER_LIST.clear()
        found = _PER_LIST[key] = make(settings)
    return found


def _list_tag(settings: Settings) -> str:
    """The part of a Message-ID after the issue id."""
    return _per_list(settings, "tag", lambda s: f"{hashlib.sha256(list_identity(s).encode('utf-8')).hexdigest()[:12]}"
                                                f"@{sender_domain(s)}")


_LABEL_LIMIT = 60  # RFC 2919 caps the whole list-id at 255 octets; a readable label is far shorter


def list_id(settings: Settings) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", settings.title.lower()[:200]).strip("-")[:_LABEL_LIMIT].strip("-")
    return f"{header_text(settings.title)} <{slug or 'digest'}.{sender_domain(settings)}>"


def _fold(name: str, value: str, limit: int = SOFT_LIMIT) -> str | None:
    """`Name: value` folded at white space into lines of at most `limit` characters where a word
    allows it; None when a word is too long for any line (the caller encodes instead)."""
    line = f"{name}: {value}"
    if len(line) <= limit:
        return line
    out: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if not word:
            continue
        if len(current) + 1 + len(word) > limit and current.strip() and current != f"{name}:":
            out.append(current)
            current = ""
        current = f"{current} {word}"
    out.append(current)
    if any(len(x.encode("utf-8")) > LINE_LIMIT for x in out):
        return None
    return CRLF.join(out)


def _encoded_words(name: str, text: str) -> str:
    """RFC 2047 encoded words of at most 75 characters, one a line (safe in phrases too)."""
    return Header(text, "utf-8", maxlinelen=SOFT_LIMIT - 2, header_name=name).encode(linesep=CRLF)


@lru_cache(maxsize=4096)  # subscribers of one slot share a subject; encoding it is the slow part
def _unstructured(name: str, text: str) -> str:
    """A header line (folded) for free text such as Subject."""
    text = header_text(text)
    if text.isascii():
        folded = _fold(name, text)
        if folded is not None:
            return folded
    return f"{name}: {_encoded_words(name, text)}"


def _phrase(name: str, text: str) -> str:
    """A display name or List-Id description: a quoted string if ASCII, else encoded words."""
    text = header_text(text)
    if text.isascii() and len(text) <= 900:
        if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*", text):
            return text
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _encoded_words(name, text)


def _phrase_and_address(name: str, phrase: str, address: str) -> str:
    """`Name: phrase <address>`: an encoded phrase is already folded; the address follows on the
    last line while it fits, else on a line of its own."""
    if "\n" not in phrase:
        value = f"{phrase} {address}" if phrase else address
        return _fold(name, value) or f"{name}: {value}"
    last = phrase.rsplit("\n", 1)[1]
    sep = " " if len(last) + 1 + len(address) <= SOFT_LIMIT else CRLF + " "
    return f"{name}: {phrase}{sep}{address}"


@lru_cache(maxsize=1024)
def _mailbox(name: str, display: str | None, email: str) -> str:
    addr = wire_form(email)  # a UTF-8 local part stays UTF-8 (RFC 6532); only the name is encoded
    shown = header_text(display or "")
    return _phrase_and_address(name, _phrase(name, shown) if shown else "", f"<{addr}>")


def _list_id_line(settings: Settings) -> str:
    def make(s: Settings) -> str:
        phrase, _, rest = list_id(s).partition(" <")
        return _phrase_and_address("List-Id", _phrase("List-Id", phrase), f"<{rest}")

    return _per_list(settings, "list-id", make)


@lru_cache(maxsize=64)  # the messages of a slot share their build time
def _date(date: datetime) -> str:
    return format_datetime(date)


def _list_unsubscribe(targets: list[str]) -> str:
    # one readable line while it fits (providers read the URL as it stands); folded after a comma
    # only when it would pass the hard limit
    line = f"List-Unsubscribe: {', '.join(targets)}"
    return line if len(line) <= LINE_LIMIT else "List-Unsubscribe: " + ("," + CRLF + " ").join(targets)


def qp_pieces(pieces: Sequence[str]) -> bytes:
    """The text the pieces make, quoted-printable: each shared piece is encoded once (kept on it) and
    pieces are joined by a soft line break where a line continues, which decoding removes, so every
    piece starts a line and no line passes 76 characters."""
    wire = getattr(pieces, "wire", None)  # a renderer's pieces (Pieces, Assembled) carry it already
    return wire if wire is not None else encoded(pieces)[0]


def build(rendered: RenderedIssue, settings: Settings, subscriber: Subscriber,
          links: UnsubscribeLinks, date: datetime) -> bytes:
    """The message as wire-form bytes (CRLF line ends, dot-safe). Every header value is either a
    constant, a validated address, or text that went through `header_text`."""
    from_name, from_addr = _parsed(settings.sender)
    boundary = f"=_{rendered.issue.id[:24]}"  # "=_" never occurs in quoted-printable: no collision
    lines = [
        _mailbox("From", from_name, from_addr),
        _mailbox("To", subscriber.name, subscriber.email),
        _unstructured("Subject", rendered.subject),
        f"Date: {_date(date)}",
        f"Message-ID: {message_id(settings, rendered.issue.id)}",
        _list_id_line(settings),
    ]
    targets = [f"<{u}>" for u in (links.https, links.mailto) if u]
    if targets:
        lines.append(_list_unsubscribe(targets))
    if links.https:
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    lines += [
        "Auto-Submitted: auto-generated",  # RFC 3834: auto-responders do not answer it
        "Precedence: bulk",  # the older convention that vacation programs still read
        f"X-Newsletter-Issue: {rendered.issue.id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    head = (CRLF.join(lines) + CRLF + CRLF).encode("utf-8")  # ASCII unless RFC 6532
    part = (f'--{boundary}\r\nContent-Type: text/%s; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    return b"".join((head, (part % "plain").encode(), qp_pieces(rendered.text_pieces), b"\r\n",
                     (part % "html").encode(), qp_pieces(rendered.html_pieces), b"\r\n",
                     f"--{boundary}--\r\n".encode()))


def to_bytes(msg: bytes) -> bytes:
    """Kept for callers that build and serialise in two steps: `build` already returns wire form."""
    return msg


# Headers a reader or a filter acts on. Each present one is signed once more than it occurs and each
# absent one once (RFC 6376 8.15, the M3AAWG practice): an added or prepended copy breaks the signature.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"auto-submitted", b"precedence", b"mime-version",
                  b"content-type", b"content-transfer-encoding", b"x-newsletter-issue",
                  b"reply-to", b"cc", b"sender", b"in-reply-to", b"references", b"list-post",
                  b"list-help", b"list-owner", b"list-archive", b"list-subscribe")


def dkim_sign(data: bytes, domain: str, selector: str, private_key: bytes) -> bytes:
    """The message with a DKIM-Signature (relaxed/relaxed: a relay that rewraps header white space
    or adds trailing spaces to body lines does not break it) over-signing SIGNED_HEADERS."""
    import dkim

    counts: dict[bytes, int] = {}
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line and not line[:1].isspace():
            name = line.split(b":", 1)[0].strip().lower()
            counts[name] = counts.get(name, 0) + 1
    headers = [h for h in SIGNED_HEADERS for _ in range(counts.get(h, 0) + 1)]
    signature = dkim.sign(data, selector.encode(), domain.encode(), private_key, include_headers=headers,
                          canonicalize=(b"relaxed", b"relaxed"), linesep=b"\r\n")
    return signature + data
