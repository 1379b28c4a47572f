"""Delivery transports behind one shape, `Sender`: each turns jobs into Outcomes; the pipeline
updates the ledger. smtp.py (aiosmtplib), maildir.py (an outbox folder), retry.py (in-run retries
of transient failures, around any Sender)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

from newsletter.models import SmtpConfig


@dataclass(frozen=True)
class Job:
    """One message for one recipient. `message` should be in wire form: CRLF line ends, ending in
    CRLF, no line starting with "."; the SMTP sender checks every message and makes it so when it
    is not (see delivery/wire.py for the cost)."""

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
    retry_in: float | None = None  # seconds: retry.Retrying will try this job again in this run


OnOutcome = Callable[[Outcome], None]
S = TypeVar("S", bound="Sender")


class Sender(Protocol):
    """What the pipeline needs from a transport, opened once per run:

        async with sender:
            await sender.deliver(batch, on_outcome)   # as many batches as the run has
            if sender.halted: ...                     # stop building: the rest stays pending

    `deliver` calls `on_outcome` once per job as soon as its fate is known, in any order, and
    returns when every job of the batch has an outcome, except jobs it did not start because the
    run is stopping or the sender halted: those get no outcome and stay pending. Connections (or
    files) stay open between batches and are closed when the `async with` block ends.
    """

    @property
    def halted(self) -> str | None:
        """Why this sender takes no more work (e.g. the circuit breaker tripped), or None."""
        ...

    async def __aenter__(self: S) -> S: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def deliver(self, jobs: Sequence[Job], on_outcome: OnOutcome) -> None: ...


def sender_for(smtp: SmtpConfig, outbox: Path | None = None, should_stop: Callable[[], bool] | None = None,
               held: Callable[[Sequence[str]], Collection[str]] | None = None) -> Sender:
    """The run's sender: the outbox folder when one is given, else the SMTP relay with in-run
    retries of transient failures (`smtp.retries`; `held` filters the retries, see retry.py)."""
    if outbox is not None:
        from newsletter.delivery.maildir import MaildirSender

        return MaildirSender(outbox)
    from newsletter.delivery.retry import Retrying
    from newsletter.delivery.smtp import SmtpSender

    return Retrying(SmtpSender(smtp, should_stop), smtp.retries, should_stop=should_stop, held=held)


__all__ = ["Job", "OnOutcome", "Outcome", "Sender", "sender_for"]
