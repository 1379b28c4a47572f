"""Deliver into a Maildir (`send --outbox DIR`): a mail client can open it; nothing leaves the machine."""

from __future__ import annotations

import mailbox
from collections.abc import Callable, Sequence
from pathlib import Path

from newsletter.delivery import Job, Outcome
from newsletter.errors import DeliveryError


def deliver(folder: Path, jobs: Sequence[Job], report: Callable[[Outcome], None]) -> None:
    try:
        box = mailbox.Maildir(str(folder), create=True)
    except OSError as exc:
        raise DeliveryError(f"outbox {folder}: cannot create a Maildir there: {exc}") from exc
    for job in jobs:
        try:
            box.add(job.message)  # written to tmp/ and renamed into new/: atomic
        except OSError as exc:
            report(Outcome(job.issue_id, job.recipient, False, None, f"outbox {folder}: {exc}",
                           connection=True))
            continue
        report(Outcome(job.issue_id, job.recipient, True, 250, f"stored in {folder}"))
