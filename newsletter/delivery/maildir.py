"""Deliver into a Maildir (`send --outbox DIR`): a mail client can open it; nothing leaves the machine."""

from __future__ import annotations

import mailbox
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from newsletter.delivery import Job, OnOutcome, Outcome
from newsletter.errors import DeliveryError


class MaildirSender:
    """The `Sender` for an outbox folder: each message is written to tmp/ and renamed into new/
    (atomic). It never halts; a file that cannot be written is a transient failure."""

    halted: str | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._box: mailbox.Maildir | None = None

    async def __aenter__(self) -> MaildirSender:
        self._box = _open(self.folder)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._box = None

    async def deliver(self, jobs: Sequence[Job], on_outcome: OnOutcome) -> None:
        _store(self._box or _open(self.folder), self.folder, jobs, on_outcome)


def deliver(folder: Path, jobs: Sequence[Job], report: OnOutcome) -> None:
    """One-shot form, kept for callers that do not hold a sender open."""
    _store(_open(folder), folder, jobs, report)


def _open(folder: Path) -> mailbox.Maildir:
    try:
        return mailbox.Maildir(str(folder), create=True)
    except OSError as exc:
        raise DeliveryError(f"outbox {folder}: cannot create a Maildir there: {exc}") from exc


def _store(box: mailbox.Maildir, folder: Path, jobs: Sequence[Job], report: OnOutcome) -> None:
    for job in jobs:
        try:
            box.add(job.message)  # written to tmp/ and renamed into new/: atomic
        except OSError as exc:
            report(Outcome(job.issue_id, job.recipient, False, None, f"outbox {folder}: {exc}",
                           connection=True))
            continue
        report(Outcome(job.issue_id, job.recipient, True, 250, f"stored in {folder}"))
