"""Wire form: what goes out after DATA is the message as it is when it is already safe, and a
made-safe copy when it is not (bare LF or CR, a line starting with ".", no final CRLF)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def reference(message: bytes) -> bool:
    """The definition, spelled out slowly."""
    lines = message.split(b"\r\n")
    return (len(lines) > 1 and lines[-1] == b"" and not message.startswith(b".")
            and all(b"\r" not in line and b"\n" not in line and not line.startswith(b".") for line in lines))


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n."]), min_size=1, max_size=12).map(b"".join))
def test_the_fast_check_agrees_with_the_definition_and_the_payload_is_always_safe(message: bytes) -> None:
    assert is_wire_form(message) == reference(message)
    payload = data_payload(message)
    assert payload.endswith(b"\r\n.\r\n")
    lines = payload[:-3].split(b"\r\n")
    assert lines[-1] == b"" and all(b"\r" not in line and b"\n" not in line for line in lines)
    assert b"." not in lines  # nothing before the end can end the message early
    # what the server reads back (RFC 5321 4.5.2: one leading dot removed) is the message
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    lines_in = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    assert unstuffed.split(b"\r\n")[:-1] == (lines_in[:-1] if lines_in[-1] == b"" else lines_in)
