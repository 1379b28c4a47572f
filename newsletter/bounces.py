"""Bounces: delivery status notifications (RFC 3464) read from a Maildir or an mbox, matched to the
issues they return (by the original Message-ID or X-Newsletter-Issue, else by the recipient being a
subscriber), and recorded. A hard bounce (Action: failed, Status 5.x.x) suppresses the address at
once; soft ones (4.x.x, or Action: delayed) after SOFT_LIMIT within SOFT_WINDOW. The box is only
read: unrelated mail, and the reports themselves, are left where they are; reading a box twice
counts nothing twice (each report is recorded once per address).
"""

from __future__ import annotations

import hashlib
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, message_from_string, policy
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path

from newsletter.addresses import normalise_address
from newsletter.errors import ConfigError
from newsletter.models import Config
from newsletter.roster import Roster
from newsletter.store_readers import ReaderStore

SOFT_LIMIT = 5
SOFT_WINDOW = timedelta(days=30)
MAX_MESSAGE = 10 * 1024 * 1024  # a DSN is small; a larger message is not read


@dataclass(frozen=True)
class Bounce:
    """One recipient of one delivery status notification."""

    report: str  # the DSN's own Message-ID (or a digest of it): a report counts once
    recipient: str | None  # Final-Recipient (or Original-Recipient), normalised
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str
    message_id: str | None  # of the returned message
    issue_id: str | None  # its X-Newsletter-Issue
    arrived: datetime | None  # the DSN's Date

    @property
    def kind(self) -> str | None:
        """hard, soft, or None (a success report, or nothing to act on)."""
        if self.action == "failed":
            return "hard" if self.status.startswith("5") else "soft"
        if self.action == "delayed" or self.status.startswith("4"):
            return "soft"
        return None


def _address(value: str | None) -> str | None:
    """`rfc822; user@example.org` -> `user@example.org`."""
    if not value:
        return None
    kind, _, address = str(value).partition(";")
    address = (address if _ else kind).strip().strip("<>")
    return normalise_address(address) if "@" in address else None


def _original(report: Message) -> Message | None:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return message_from_string(raw.decode("utf-8", "replace"))
    return None


def parse(data: bytes) -> list[Bounce]:
    """The recipients a DSN reports on; [] for any message that is not a DSN."""
    if len(data) > MAX_MESSAGE:
        return []
    msg = message_from_bytes(data, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report" or \
            str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return []
    status_part = next((p for p in msg.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        return []
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        return []
    original = _original(msg)
    message_id = str(original.get("Message-ID", "")).strip() or None if original else None
    issue_id = str(original.get("X-Newsletter-Issue", "")).strip() or None if original else None
    report = str(msg.get("Message-ID", "")).strip() or "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        arrived = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        arrived = None
    if arrived is not None and arrived.tzinfo is None:
        arrived = None
    out = []
    for block in blocks[1:]:  # the first block is about the message, the rest one per recipient
        if not isinstance(block, Message):
            continue
        out.append(Bounce(report, _address(block.get("Final-Recipient")) or _address(block.get("Original-Recipient")),
                          str(block.get("Action", "")).strip().lower(), str(block.get("Status", "")).strip(),
                          " ".join(str(block.get("Diagnostic-Code", "")).split())[:300], message_id, issue_id,
                          arrived))
    return out


def check_box(path: Path) -> None:
    """A Maildir (a folder with cur/ or new/) or an mbox file, else a ConfigError saying so."""
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ConfigError(f"{path}: not a Maildir (no cur/ or new/ folder); pass a Maildir or an mbox file")
    elif not path.is_file():
        raise ConfigError(f"{path}: no such Maildir or mbox file")


def read_box(path: Path, done: set[str] | None = None) -> Iterator[bytes]:
    """Every message of a Maildir (a folder with cur/ and new/) or an mbox file, read-only.
    `done` (a Maildir watched by `run`): the keys of messages read before, skipped; grows."""
    check_box(path)
    box: mailbox.Mailbox = (mailbox.Maildir(str(path), factory=None, create=False) if path.is_dir()
                            else mailbox.mbox(str(path), factory=None, create=False))
    try:
        for key in box.keys():
            if done is not None and key in done:
                continue
            try:
                data = box.get_bytes(key)
            except (OSError, KeyError):
                continue  # taken away by a mail client meanwhile
            if done is not None:
                done.add(key)
            yield data
    finally:
        box.close()


@dataclass
class Summary:
    messages: int = 0
    reports: int = 0
    unrelated: int = 0  # messages that are not DSNs about our mail: left alone
    hard: list[str] = field(default_factory=list)
    soft: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    seen: int = 0  # reports read before


def who(store: ReaderStore, config: Config, bounce: Bounce) -> tuple[str, str | None] | None:
    """(subscriber, issue id) a bounce is about, or None when it is about no mail of ours."""
    if bounce.message_id:
        found = store.issue_for_message_id(bounce.message_id)
        if found is not None:
            return found[1], found[0]
    if bounce.issue_id:
        subscriber = store.issue_subscriber(bounce.issue_id)
        if subscriber is not None:
            return subscriber, bounce.issue_id
    if bounce.recipient and Roster(config, store).find(bounce.recipient) is not None:
        return bounce.recipient, None
    return None


def process(store: ReaderStore, config: Config, path: Path, now: datetime, *, done: set[str] | None = None) -> Summary:
    """Read the box and record what its DSNs say; nothing in the box is changed. `done`: see read_box."""
    summary = Summary()
    for data in read_box(path, done):
        summary.messages += 1
        ours = False
        for bounce in parse(data):
            kind = bounce.kind
            target = who(store, config, bounce) if kind else None
            if kind is None or target is None:
                continue
            ours = True
            email, issue_id = target
            at = min(bounce.arrived or now, now)
            result = store.record_bounce(bounce.report, email, kind, bounce.status, issue_id, at,
                                         soft_limit=SOFT_LIMIT, since=now - SOFT_WINDOW)
            if result is None:
                summary.seen += 1
                continue
            summary.reports += 1
            (summary.hard if kind == "hard" else summary.soft).append(email)
            if result == "suppressed":
                summary.suppressed.append(email)
        if not ours:
            summary.unrelated += 1
    return summary

