"""Delivery transports. Each turns one message into an Outcome; the pipeline updates the ledger."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    issue_id: str
    sender: str
    recipient: str  # the subscriber, as the ledger knows them
    message: bytes
    envelope: str = ""  # the address for RCPT TO (IDNA domain) when it differs

    @property
    def rcpt(self) -> str:
        return self.envelope or self.recipient


@dataclass(frozen=True)
class Outcome:
    issue_id: str
    recipient: str
    ok: bool
    code: int | None = None
    text: str = ""
    permanent: bool = False
    possible_duplicate: bool = False
    connection: bool = False  # the failure was the connection, not this message
