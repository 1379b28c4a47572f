"""Wire form: what goes out after DATA is the message as it is when it is already safe, and a
made-safe copy when it is not (bare LF or CR, a line starting with ".", no final CRLF)."""

from __future__ import annotations

import pytest

from newsletter.delivery.wire import data_payload, is_wire_form


@pytest.mark.parametrize("message", [
    b"Subject: x\r\n\r\nbody\r\n",
    b"a\r\n",
    b"Subject: x\r\n\r\nend with dot.\r\nmid.dle\r\n",
])
def test_wire_form_goes_out_unchanged(message: bytes) -> None:
    assert is_wire_form(message)
    assert data_payload(message) == message + b".\r\n"


@pytest.mark.parametrize(("message", "payload"), [
    (b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody\r\n.\r\n"),  # bare LF
    (b"Subject: x\r\rbody\r", b"Subject: x\r\n\r\nbody\r\n.\r\n"),  # bare CR
    (b"Subject: x\r\n\r\n.\r\n..x\r\n", b"Subject: x\r\n\r\n..\r\n...x\r\n.\r\n"),  # dot-stuffing
    (b".first\r\n", b"..first\r\n.\r\n"),
    (b"no final line end", b"no final line end\r\n.\r\n"),
    (b"mixed\r\nends\nhere\r\n.\n", b"mixed\r\nends\r\nhere\r\n..\r\n.\r\n"),
    (b"", b"\r\n.\r\n"),
])
def test_anything_else_is_made_safe(message: bytes, payload: bytes) -> None:
    assert not is_wire_form(message)
    assert data_payload(message) == payload


def test_a_lone_cr_before_a_crlf_is_not_wire_form() -> None:
    message = b"a\rb\r\n"
    assert not is_wire_form(message)
    assert data_payload(message) == b"a\r\nb\r\n.\r\n"
