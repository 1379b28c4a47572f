"""Short plain-text mails to one reader (a sign-up's confirmation link, "you are subscribed
already"), built here and sent through the same delivery path as the digests (`sender_for`)."""

from __future__ import annotations

import logging
import secrets as random
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from newsletter.addresses import wire_form
from newsletter.delivery import Job, Outcome, sender_for
from newsletter.message import sender_address, sender_domain
from newsletter.models import Settings

log = logging.getLogger("newsletter.web")


def compose(settings: Settings, to: str, subject: str, text: str, now: datetime) -> bytes:
    """The message in wire form (CRLF). Header values come from validated addresses and our own text."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<notice.{random.token_hex(12)}@{sender_domain(settings)}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    return msg.as_bytes()


async def send(settings: Settings, to: str, message: bytes) -> Outcome | None:
    """Deliver one notice now; the outcome (None if the sender did not start it) is logged."""
    outcomes: list[Outcome] = []
    async with sender_for(settings.smtp) as sender:
        await sender.deliver([Job("notice", sender_address(settings), to, message, envelope=wire_form(to))],
                             outcomes.append)
    outcome = outcomes[0] if outcomes else None
    if outcome is None or not outcome.ok:
        log.warning("notice to %s not delivered: %s", to, outcome.text if outcome else "not started")
    return outcome
