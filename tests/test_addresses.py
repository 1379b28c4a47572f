"""Real address test cases (email-validator's suite): valid ones get a well-formed message,
invalid ones are refused with email-validator's own message at file:line:col."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import DATA, run, write_config
from newsletter.addresses import AddressChecker, check_address

CASES = json.loads((DATA / "email_validator_syntax_cases.json").read_text())
ALL_VALID = [c["email_input"] for c in CASES["test_email_valid"] + CASES["test_email_valid_intl_local_part"]]
# Quoted local parts and "Name <addr>" forms are valid only with email-validator's opt-in flags; a
# subscriber's address is a bare mailbox (the name has its own key), so those are refused.
VALID = [a for a in ALL_VALID if '"' not in a and "<" not in a]
OPT_IN = [a for a in ALL_VALID if a not in VALID]
INVALID = [c["email_input"] for c in CASES["test_email_invalid_syntax"] + CASES["test_email_invalid_syntax_strict"]]


def expected_error(address: str) -> str:
    """The installed email-validator's own words (the captured ones differ between its versions)."""
    from email_validator import EmailNotValidError, validate_email

    if "\r" in address or "\n" in address:
        return "an address cannot contain a line break"
    try:
        validate_email(address, check_deliverability=False, strict=True)  # strict: at most 64 before the @
    except EmailNotValidError as exc:
        return str(exc)
    raise AssertionError(f"{address!r} is valid")


def test_every_valid_address_gets_a_well_formed_message(tmp_path: Path) -> None:
    subs = "".join(f"  - email: {json.dumps(a)}\n    keywords: [model]\n    max_entries: 1\n" for a in VALID)
    project = write_config(tmp_path, subscribers=subs)
    assert run("--file", str(project), "validate") == 0
    box = tmp_path / "box"
    assert run("--file", str(project), "send", "--outbox", str(box), "--at", "2026-11-27T09:00:00Z") == 0
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in (box / "new").iterdir()]
    assert len(messages) == len({a.lower() for a in VALID})
    for msg in messages:
        (to,) = msg["To"].addresses
        assert "@" in to.addr_spec and msg["Message-ID"] and msg.get_body(("plain",)).get_content()


@pytest.mark.parametrize("address", INVALID + OPT_IN, ids=[repr(a)[:40] for a in INVALID + OPT_IN])
def test_invalid_addresses_are_refused_with_a_reason(address: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path, subscribers=f"  - email: {json.dumps(address)}\n    keywords: [model]\n")
    assert run("--file", str(project), "validate") == 2
    err = capsys.readouterr().err
    assert f"{project}:12:12: subscribers[0].email: {expected_error(address)}" in err


def _outcome(check: object, address: str) -> str:
    try:
        return "ok " + check(address)  # type: ignore[operator]
    except ValueError as exc:
        return f"refused: {exc}"


def test_the_list_checker_agrees_with_check_address_on_every_case() -> None:
    """AddressChecker validates each domain once; its verdict and words are check_address's own."""
    cases = [c.get("email_input", c.get("s", "")) for group in CASES.values() if isinstance(group, list) for c in group]
    domains = ["example.org", "EXAMPLE.org", "münchen.example", "xn--mnchen-3ya.example", "例え.jp",
               "example.invalid", "localhost", "a..b", "-a.org", "a" * 63 + ".org", ("a" * 60 + ".") * 4 + "org",
               "[1.2.3.4]", "1.2.3.4", "exa mple.org", "example.org."]
    locals_ = ["ada", "Ada.Lovelace", "a" * 64, "a" * 65, "é" * 32, "é" * 33, "jörg", "a..b", ".a", "a b",
               '"quoted"', "postmaster", "x+tag", "\u00e9"]
    cases += [f"{local}@{domain}" for local in locals_ for domain in domains]
    cases += [f"{'a' * n}@{'b' * 60}.{'c' * 60}.{'d' * 60}.org" for n in range(50, 66)]  # near 254 octets
    checker = AddressChecker()
    for _ in range(2):  # the second pass answers from what the first learnt
        for address in cases:
            assert _outcome(checker, address) == _outcome(check_address, address), address
