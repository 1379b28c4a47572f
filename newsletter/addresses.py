"""Email addresses: validation (email-validator) and the normal form used to compare subscribers."""

from __future__ import annotations

import re
import unicodedata
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email


def normalise_address(address: str) -> str:
    """NFC, surrounding space dropped, case folded: `Ada@Example.org` == `ada@example.org`.

    Local parts are case-sensitive in theory only; every mail system people use ignores case,
    and treating them apart would let one person be subscribed twice.
    """
    return unicodedata.normalize("NFC", address.strip()).lower()


# RFC 5321 4.5.3.1.1 counts octets: a UTF-8 local part may be short in characters and still too long.
_LOCAL_MAX_OCTETS = 64
_ADDRESS_MAX_OCTETS = 254
# `local@domain` with no quoting, brackets, comments or display-name syntax on either side: then
# email-validator judges the local part and the domain apart (and the lengths last), so the two
# verdicts can be reached separately and the domain's remembered.
_PLAIN_PART = re.compile(r"[^\s@<>()\[\]\\,;:\"]+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")  # valid as it stands, and its own normal form
_PROBE_DOMAIN = "a.org"  # a short valid domain, to judge a local part alone


def check_address(address: str) -> str:
    """The normalised address, or ValueError saying why it is not a deliverable address."""
    if any(c in address for c in "\r\n"):
        raise ValueError("an address cannot contain a line break")
    try:
        valid = validate_email(address, check_deliverability=False, strict=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    octets = len(valid.local_part.encode("utf-8"))
    if octets > _LOCAL_MAX_OCTETS:
        raise ValueError(f"The email address is too long before the @-sign ({octets} octets in UTF-8, "
                         f"at most {_LOCAL_MAX_OCTETS}).")
    return normalise_address(valid.normalized)


class AddressChecker:
    """check_address for a whole list, with each distinct domain validated once.

    A list has many addresses but few domains, and the domain (IDNA, special-use names) is most of
    email-validator's work. An address that is not a plain `local@domain`, or is refused, goes
    through check_address whole, so every message is the library's own for that address.
    """

    def __init__(self) -> None:
        self._domains: dict[str, tuple[str, int] | None] = {}  # normal form, IDNA length; None: refused

    def __call__(self, address: str) -> str:
        local, at, domain = address.rpartition("@")
        if not (at and _PLAIN_PART.fullmatch(local) and _PLAIN_PART.fullmatch(domain)):
            return check_address(address)
        if len(local) <= _LOCAL_MAX_OCTETS and _ASCII_LOCAL.fullmatch(local):
            normal_local = local.lower()
        else:
            try:
                normal_local = check_address(f"{local}@{_PROBE_DOMAIN}").rpartition("@")[0]
            except ValueError:
                return check_address(address)  # the words for this very address
        if domain not in self._domains:
            try:
                valid = validate_email(f"a@{domain}", check_deliverability=False, strict=True)
                self._domains[domain] = (normalise_address(valid.domain), len(valid.ascii_domain))
            except EmailNotValidError:
                self._domains[domain] = None
        known = self._domains[domain]
        if known is None:
            return check_address(address)
        normal_domain, ascii_length = known
        local_octets = len(normal_local.encode("utf-8"))
        longest = max(len(address.encode("utf-8")), local_octets + 1 + len(normal_domain.encode("utf-8")),
                      local_octets + 1 + ascii_length)
        if longest > _ADDRESS_MAX_OCTETS - 8:  # near the limit: the library says which form is too long
            return check_address(address)
        return f"{normal_local}@{normal_domain}"


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
