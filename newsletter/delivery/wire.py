"""The bytes that follow SMTP DATA: a message already in wire form goes out as it is, anything
else is made safe first (CRLF line ends, dot-stuffing, RFC 5321 4.5.2).

Every message is checked, with a few vectorised passes (about 20 us for 54 KB, where bytes.count
and `in` took 150 us and aiosmtplib's own regular expressions about 1 ms). A message with CRLF line
ends but lines that start with "." (today's QP soft breaks and MJML's CSS give about two per
digest) gets those dots doubled by joining slices; only other line ends take the slow path
through a regular expression.
"""

from __future__ import annotations

import re

import numpy as np

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
END = b".\r\n"


def _scan(message: bytes) -> tuple[bool, list[int]]:
    """(CRLF line ends only, ending in CRLF; the offsets of the lines that start with ".")"""
    if not message:
        return False, []
    a = np.frombuffer(message, np.uint8)
    lf = a == 0x0A
    crlf = message.endswith(b"\r\n") and not lf[0] and not (lf[1:] != (a[:-1] == 0x0D)).any()
    dots = (np.flatnonzero(lf[:-1] & (a[1:] == 0x2E)) + 1).tolist()
    return crlf, [0, *dots] if message[0] == 0x2E else dots


def is_wire_form(message: bytes) -> bool:
    """CRLF line ends only, ending in CRLF, no line starting with "."."""
    crlf, dots = _scan(message)
    return crlf and not dots


def data_payload(message: bytes) -> bytes:
    """The message and the end-of-data line, ready to write after the server's 354."""
    crlf, dots = _scan(message)
    if not crlf:  # the rare path
        message = _LINE_ENDS.sub(b"\r\n", message)
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        dots = _scan(message)[1]
    if dots:  # each of these lines gets one more "." (a few per message: slices, no scan)
        ends = [*dots, len(message)]
        message = b"".join([message[: ends[0]], *(b"." + message[ends[i]:ends[i + 1]] for i in range(len(dots)))])
    return message + END
