"""Email addresses: validation (email-validator) and the normal form used to compare subscribers."""

from __future__ import annotations

import unicodedata
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email


def normalise_address(address: str) -> str:
    """NFC, surrounding space dropped, case folded: `Ada@Example.org` == `ada@example.org`.

    Local parts are case-sensitive in theory only; every mail system people use ignores case,
    and treating them apart would let one person be subscribed twice.
    """
    return unicodedata.normalize("NFC", address.strip()).lower()


def check_address(address: str) -> str:
    """The normalised address, or ValueError saying why it is not a deliverable address."""
    if any(c in address for c in "\r\n"):
        raise ValueError("an address cannot contain a line break")
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return normalise_address(valid.normalized)


def check_sender(value: str) -> str:
    """A From value such as `Daily Papers <digest@example.org>`; returns it unchanged if valid."""
    if any(c in value for c in "\r\n"):
        raise ValueError("the sender cannot contain a line break")
    _, addr = parseaddr(value)
    if not addr:
        raise ValueError(f"'{value}' has no address (write 'Name <user@example.org>')")
    check_address(addr)
    return value


def wire_form(address: str) -> str:
    """The address as sent: an internationalised domain in its ASCII (IDNA) form. A non-ASCII local
    part stays UTF-8 (it needs SMTPUTF8 from the server)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address
