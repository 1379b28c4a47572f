"""Assembling an email from shared pieces: each piece encoded for the wire once (`SharedText`), a
card cut where the issue's rating prefix goes (`Holed`), and the MJML frame compiled once per shape
of issue; `plans.py` fills the template's output per subscriber from these.

How a frame is made: the Jinja output has each card as a placeholder; the content of every text
block (`<mj-text>`, `<mj-title>`) is taken out, the rest (the skeleton) compiled by MJML once, and
each issue's blocks put back between its static pieces: MJML copies a text block's content as it
stands, so the result is the same, byte for byte, as compiling the whole document.
"""
from __future__ import annotations

import binascii
import re
from itertools import islice
from collections.abc import Sequence

# Placeholders while a frame is assembled (MJML drops private-use characters, so plain ASCII);
# output that holds them other than where they were put takes the direct path
OPEN, CLOSE = "@@nl-hole-", "@@"
_TOKEN = re.compile(f"{OPEN}(\\d+){CLOSE}")
_TEXT_BLOCK = re.compile(r"(<mj-(?:text|title)\b[^>]*(?<!/)>)(.*?)(</mj-(?:text|title)>)", re.S)
_SHARED_LIMIT = 50_000  # distinct shared pieces kept per renderer before the store starts again


SOFT_BREAK = b"=\r\n"  # a quoted-printable soft line break: decoding removes it
_b2a_qp = binascii.b2a_qp


def qp(text: str) -> bytes:
    """Quoted-printable in wire form: CRLF line ends, lines of at most 76 characters, and no line
    that starts with "." (a lone "." would end the SMTP DATA; others would need dot-stuffing).

    binascii does the encoding in C; `text` must use LF line ends."""
    return qp_sized(text)[0]


def qp_sized(text: str) -> tuple[bytes, int]:
    """`qp(text)` and the size of `text` in UTF-8 (from the one encoding both need)."""
    # a final CRLF makes binascii use CRLF for its soft line breaks too; it is taken off again
    data = (text.replace("\n", "\r\n") + "\r\n").encode()
    out = _b2a_qp(data, False, True, False)[:-2]  # quotetabs, istext, header (positional: cheaper)
    if out[:1] == b"." or b"\n." in out:
        out = _dot_safe(out)
    return out, len(text) if text.isascii() else len(data) - 2 - text.count("\n")


def _dot_safe(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    fixed: list[bytes] = []
    for line in lines:
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= 76:
                break
            # "=2E" made the line too long: cut it with a soft break, not inside an =XX escape
            cut = 75
            while b"=" in line[cut - 2:cut]:
                cut -= 1
            fixed.append(line[:cut] + b"=")
            line = line[cut:]
        fixed.append(line)
    return b"\r\n".join(fixed)


class SharedText(str):
    """A piece of a rendered email shared by many subscribers' messages, encoded once: its
    quoted-printable form (`wire`), whether it ends a line (`nl`) and its UTF-8 size."""

    wire: bytes
    nl: bool
    starts_nl: bool
    size: int

    def __new__(cls, value: str) -> SharedText:
        self = super().__new__(cls, value)
        self.wire, self.size = qp_sized(value)
        self.nl = value.endswith("\n")
        self.starts_nl = value.startswith("\n")
        return self

    @classmethod
    def run(cls, pieces: Sequence[SharedText]) -> SharedText:
        """Consecutive pieces as one: the same text and, byte for byte, the encoded form `encoded`
        gives the pieces (so a message made of runs is the message made of the pieces)."""
        if len(pieces) == 1:
            return pieces[0]
        self = str.__new__(cls, "".join(pieces))
        self.wire, self.size = encoded(pieces)
        self.starts_nl, self.nl = pieces[0].starts_nl, pieces[-1].nl
        return self


class Holed:
    """Shared pieces with holes: a card and its rating links, the issue's rating prefix going before
    each piece of `tail`. Kept as references to the pieces and their encoded forms (nothing copied:
    a card is one of tens of thousands kept); filled per message by the pass that encodes it, the
    soft line breaks around each hole placed as `encoded` would place them."""

    __slots__ = ("holes", "nl", "pieces", "size", "starts_nl", "texts", "wires")
    texts: tuple[tuple[SharedText, ...], ...]
    wires: tuple[tuple[bytes, ...], ...]

    def __init__(self, head: Sequence[SharedText], tail: Sequence[SharedText]) -> None:
        first = head[0]
        self.starts_nl = first.starts_nl
        # the text and the encoded form between the holes; for a prefix that neither starts nor
        # ends a line (a URL): a soft break before it unless the line ended, and after it unless
        # the next piece starts a line
        wire: list[bytes] = [first.wire]
        size, prev = first.size, first
        for p in head[1:]:
            if prev.nl or p.starts_nl:
                wire.append(p.wire)
            else:
                wire += (SOFT_BREAK, p.wire)
            size += p.size
            prev = p
        if not tail:  # most cards: one piece of text and of wire
            self.pieces = tuple(head)
            self.holes, self.size, self.nl = 0, size, prev.nl
            self.texts, self.wires = (self.pieces,), (tuple(wire),)
            return
        self.pieces = (*head, *tail)
        self.holes = len(tail)
        self.size = size + sum(p.size for p in tail)
        self.nl = tail[-1].nl
        texts, wires = [tuple(head)], [wire]
        for t in tail:
            if not prev.nl:
                wires[-1].append(SOFT_BREAK)
            texts.append((t,))
            wires.append([t.wire] if t.starts_nl else [SOFT_BREAK, t.wire])
            prev = t
        self.texts = tuple(texts)
        self.wires = tuple(tuple(w) for w in wires)

    def fill(self, prefix: SharedText | None) -> SharedText:
        """The pieces as one, with `prefix` in every hole (None: without the holed part)."""
        if prefix is None or not self.holes:
            return SharedText.run(self.texts[0])
        out: list[SharedText] = list(self.texts[0])
        for t in self.pieces[len(out):]:
            out += (prefix, t)
        return SharedText.run(out)


class Pieces(tuple[str, ...]):
    """The pieces of one part of one message, with their quoted-printable form joined (`wire`:
    each piece starts a line, joined by soft breaks where a line continues, unless the next piece
    starts with a line break of its own) and the UTF-8 size."""

    wire: bytes
    size: int


def encoded(pieces: Sequence[str]) -> tuple[bytes, int]:
    """The quoted-printable form and UTF-8 size of the text the pieces make (see `Pieces`)."""
    out: list[bytes] = []
    nl, size = True, 0
    for piece in pieces:
        if type(piece) is SharedText:
            wire, end, n, starts = piece.wire, piece.nl, piece.size, piece.starts_nl
        else:
            (wire, n), end, starts = qp_sized(piece), piece.endswith("\n"), piece.startswith("\n")
        if not nl and not starts:
            out.append(SOFT_BREAK)
        out.append(wire)
        nl = end
        size += n
    return b"".join(out), size


def joined(parts: Sequence[str]) -> Pieces:
    out = Pieces(parts)
    out.wire, out.size = encoded(parts)
    return out


def token(k: int) -> str:
    return f"{OPEN}{k}{CLOSE}"


def split_tokens(source: str, n: int) -> list[str] | None:
    """`source` split at its placeholders, which must be exactly 0..n-1, once each, in order, with
    no stray placeholder character (data that carries one takes the direct path)."""
    parts = _TOKEN.split(source)
    if parts[1::2] != [str(i) for i in range(n)]:
        return None
    if any(OPEN in p for p in parts[0::2]):
        return None
    return parts


def fill(source: str, pieces: Sequence[str]) -> list[str]:
    """`source` (already checked by `split_tokens`) with each placeholder replaced by its piece."""
    parts = _TOKEN.split(source)
    for i in range(1, len(parts), 2):
        parts[i] = pieces[int(parts[i])]
    return [p for p in parts if p]


Frame = tuple[list[SharedText], list[int]]


def hollow(source: str) -> tuple[str, list[str]] | None:
    """The skeleton (each text block's content replaced by a placeholder) and the blocks' contents;
    None when a card placeholder stands outside a text block."""
    blocks: list[str] = []

    def hole(m: re.Match[str]) -> str:
        blocks.append(m.group(2))
        return f"{m.group(1)}{token(len(blocks) - 1)}{m.group(3)}"

    skeleton = _TEXT_BLOCK.sub(hole, source)
    if split_tokens(skeleton, len(blocks)) is None:
        return None
    return skeleton, blocks


def frame(compiled: str, blocks: int) -> Frame | None:
    """A compiled skeleton as its static pieces and, between them, which text block goes there
    (MJML may use a block twice: the title is also the body's aria-label)."""
    parts = _TOKEN.split(compiled)
    order = [int(k) for k in parts[1::2]]
    if any(k >= blocks for k in order) or any(OPEN in p for p in parts[0::2]):
        return None
    return [SharedText(p) for p in parts[0::2]], order


def assemble(fr: Frame, blocks: list[str], cards: Sequence[str]) -> list[str]:
    """The frame's static pieces with the blocks (cards filled in) between them, empty ones left out."""
    static, order = fr
    filled = [fill(b, cards) if OPEN in b else [b] for b in blocks]
    out: list[str] = [static[0]]
    for i, k in enumerate(order):
        out.extend(filled[k])
        out.append(static[i + 1])
    return [p for p in out if p]


class Interned:
    """Pieces many messages share, each kept once (with its encoded form, once encoded)."""

    def __init__(self) -> None:
        self._pieces: dict[str, SharedText] = {}

    def __call__(self, piece: str) -> SharedText:
        # a piece encoded where it was made (a card's parts) keeps that encoded form, as `encoded` does
        if type(piece) is SharedText:
            return piece
        found = self._pieces.get(piece)
        if found is None:
            if len(self._pieces) >= _SHARED_LIMIT:
                # the half added first goes (a piece of it still in use is encoded again when next met)
                for old in list(islice(self._pieces, max(1, _SHARED_LIMIT // 2))):
                    del self._pieces[old]
            found = self._pieces[piece] = SharedText(piece)
        return found
