"""Assembling an email from shared pieces: the MJML frame compiled once per shape, the cards built
once, and (`Plan`) the template's output for one shape of issue with a hole for every value.

How a frame is made: the Jinja output has each card as a placeholder; the content of every text
block (`<mj-text>`, `<mj-title>`) is taken out, the rest (the skeleton) compiled by MJML once, and
each issue's blocks put back between its static pieces: MJML copies a text block's content as it
stands, so the result is the same, byte for byte, as compiling the whole document.

How a plan is made: the template is rendered once with a sentinel for each non-empty string value
of the context (names, links, subject, ...) and the real values of everything that decides its
shape (how many papers, which values are empty, numbers); the pieces that output is cut into are
then filled per subscriber with the values, escaped as Jinja would have escaped them. Only the
default theme is planned (a user template may do anything with a value); each plan is checked
against a real rendering before it is used.
"""

from __future__ import annotations

import binascii
import re
from itertools import islice
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from markupsafe import Markup

# Placeholders while a frame is assembled (MJML drops private-use characters, so plain ASCII);
# output that holds them other than where they were put takes the direct path
OPEN, CLOSE = "@@nl-hole-", "@@"
_TOKEN = re.compile(f"{OPEN}(\\d+){CLOSE}")
_SLOT_OPEN = "@@nl-slot-"
_SLOT = re.compile(f"{_SLOT_OPEN}(\\d+){CLOSE}")
_TEXT_BLOCK = re.compile(r"(<mj-(?:text|title)\b[^>]*(?<!/)>)(.*?)(</mj-(?:text|title)>)", re.S)
# values that differ from one subscriber to the next: pieces holding them are not kept for reuse
_PERSONAL = ("subscriber", "profile", "unsubscribe_url", "change_url", "view_url", "rate_url", "issue.id", "near_")
_SHARED_LIMIT = 50_000  # distinct shared pieces kept per renderer before the store starts again


SOFT_BREAK = b"=\r\n"  # a quoted-printable soft line break: decoding removes it
_b2a_qp = binascii.b2a_qp


def qp(text: str) -> bytes:
    """Quoted-printable in wire form: CRLF line ends, lines of at most 76 characters, and no line
    that starts with "." (a lone "." would end the SMTP DATA; others would need dot-stuffing).

    binascii does the encoding in C; `text` must use LF line ends."""
    return _qp_sized(text)[0]


def _qp_sized(text: str) -> tuple[bytes, int]:
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
        self.wire, self.size = _qp_sized(value)
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
            (wire, n), end, starts = _qp_sized(piece), piece.endswith("\n"), piece.startswith("\n")
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


# --- plans: one shape of issue, rendered once with holes for the values ------------------------

def shape(context: dict[str, Any], constant: tuple[str, ...] = ("newsletter", "t", "papers")) -> tuple[Any, list[str]]:
    """What decides the template's output besides the values (which strings are empty, list
    lengths, numbers, None), and the non-empty string values in a fixed order (that of
    `sentinels`). Values nest two levels at most (a list in a dict)."""
    values: list[str] = []
    add = values.append
    key: list[tuple[str, Any]] = []
    for k, v in context.items():
        if k in constant:
            continue
        if type(v) is dict:
            inner = []
            for kk, x in v.items():
                if type(x) is str:  # most values: inline
                    if x:
                        add(x)
                    inner.append((kk, 1 if x else 0))
                else:
                    inner.append((kk, _level(x, add)))
            key.append((k, tuple(inner)))
        elif type(v) is str:
            if v:
                add(v)
            key.append((k, 1 if v else 0))
        else:
            key.append((k, _level(v, add)))
    return (len(context["papers"]), tuple(key)), values


def _level(v: Any, add: Callable[[str], None]) -> Any:
    if type(v) is list:
        return ("[", tuple([_leaf(x, add) for x in v]))
    return _leaf(v, add)


def _leaf(v: Any, add: Callable[[str], None]) -> Any:
    kind = type(v)
    if kind is str:
        if v:
            add(v)
            return 1
        return 0
    if kind is int and v:  # a number is a value too (a template that computes with it gets no plan)
        add(str(v))
        return 2
    if v is None or kind is bool or kind is int:
        return v
    raise TypeError(f"no plan for a {kind.__name__} in the context")


def sentinels(context: dict[str, Any], constant: tuple[str, ...] = ("newsletter", "t", "papers")
              ) -> tuple[dict[str, Any], list[str]]:
    """The context with each non-empty string replaced by its sentinel (in `shape`'s order), each
    paper by its card placeholders only, and the dotted path of each sentinel."""
    paths: list[str] = []

    def walk(v: Any, path: str) -> Any:
        if (type(v) is str or type(v) is int) and v:
            paths.append(path)
            return f"{_SLOT_OPEN}{len(paths) - 1}{CLOSE}"
        if type(v) is dict:
            return {k: walk(x, f"{path}.{k}" if path else k) for k, x in v.items()}
        if type(v) is list:
            return [walk(x, path) for x in v]
        return v

    out = {k: v if k in constant else walk(v, k) for k, v in context.items()}
    out["papers"] = [{"card_html": Markup(token(k)), "card_text": token(k)} for k in range(len(context["papers"]))]
    return out, paths


def html_escape(value: str) -> str:
    """`markupsafe.escape` (what Jinja's autoescape applies) for an exact str, without making a
    Markup: the same five characters and the same entities (a test holds the two equal). Never for a
    Markup, which markupsafe leaves as it is (`shape` lets only exact strings through)."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;"))


class _CardRef(str):
    """Where card `k` goes in a plan's pieces."""

    k: int


@dataclass(frozen=True)
class _Fill:
    """A piece with values in it: literal parts around value indexes; `shared` when none of the
    values is personal (the filled piece is then kept and encoded once)."""

    parts: tuple[str, ...]
    slots: tuple[int, ...]
    shared: bool

    def __call__(self, values: Sequence[str]) -> str:
        parts = self.parts
        out = [parts[0]]
        for i, slot in enumerate(self.slots):
            out.append(values[slot])
            out.append(parts[i + 1])
        return "".join(out)


Item = SharedText | _CardRef | _Fill


class Plan:
    """The HTML and text pieces of one shape of issue: static pieces, cards, pieces with values."""

    def __init__(self, html: list[Item], text: list[Item]) -> None:
        self.html = html
        self.text = text
        self.html_slots = sorted({i for it in html if isinstance(it, _Fill) for i in it.slots})

    @classmethod
    def make(cls, html_source: str, text_source: str, n: int, paths: list[str],
             frame_of: Callable[[str, int], Frame | None], intern: Callable[[str], SharedText]) -> Plan | None:
        """A plan from the sentinel rendering of both templates; None when this shape cannot have
        one (a value outside a text block, a card outside one)."""
        refs = [_CardRef(token(k)) for k in range(n)]
        for k, ref in enumerate(refs):
            ref.k = k
        if split_tokens(html_source, n) is None or split_tokens(text_source, n) is None:
            return None
        hollowed = hollow(html_source)
        if hollowed is None or _SLOT_OPEN in hollowed[0]:
            return None
        fr = frame_of(hollowed[0], len(hollowed[1]))
        if fr is None:
            return None

        def item(piece: str) -> Item:
            if isinstance(piece, (SharedText, _CardRef)):
                return piece
            parts = _SLOT.split(piece)
            if len(parts) == 1:
                return intern(piece)
            slots = tuple(int(s) for s in parts[1::2])
            return _Fill(tuple(parts[0::2]), slots,
                         not any(paths[s].startswith(_PERSONAL) for s in slots))

        return cls(_runs([item(p) for p in assemble(fr, hollowed[1], refs)]),
                   _runs([item(p) for p in fill(text_source, refs)]))

    @staticmethod
    def _wire(items: list[Item], values: Sequence[str], cards: Sequence[Holed], prefix: SharedText | None,
              intern: Callable[[str], SharedText]) -> tuple[bytes, int]:
        """The encoded form of the pieces (what `joined` gives them: see `_texts`) and their UTF-8
        size, from each piece's encoded form: each card's pieces and the issue's prefix between
        them, without joining a card on its own."""
        wires: list[bytes] = []
        add, extend = wires.append, wires.extend
        nl, size = True, 0
        plain = prefix is not None and bool(prefix) and not prefix.starts_nl and not prefix.nl
        for it in items:
            kind = type(it)
            if kind is SharedText:
                if not nl and not it.starts_nl:  # type: ignore[union-attr]
                    add(SOFT_BREAK)
                add(it.wire)  # type: ignore[union-attr]
                nl = it.nl  # type: ignore[union-attr]
                size += it.size  # type: ignore[union-attr]
                continue
            if kind is _CardRef:
                card = cards[it.k]  # type: ignore[union-attr]
                if plain or not card.holes:
                    if not nl and not card.starts_nl:
                        add(SOFT_BREAK)
                    chunks = card.wires
                    extend(chunks[0])
                    if card.holes:
                        wire = prefix.wire  # type: ignore[union-attr]
                        for chunk in chunks[1:]:
                            add(wire)
                            extend(chunk)
                        size += card.holes * prefix.size  # type: ignore[union-attr]
                    nl = card.nl
                    size += card.size
                    continue
                it = card.fill(prefix)  # an odd prefix (one that starts or ends a line): as one piece
            else:
                piece = it(values)  # type: ignore[operator]
                if not it.shared:  # type: ignore[union-attr]
                    if not nl and not piece.startswith("\n"):
                        add(SOFT_BREAK)
                    wire, n = _qp_sized(piece)
                    add(wire)
                    nl = piece.endswith("\n")
                    size += n
                    continue
                it = intern(piece)
            if not nl and not it.starts_nl:  # type: ignore[union-attr]
                add(SOFT_BREAK)
            add(it.wire)  # type: ignore[union-attr]
            nl = it.nl  # type: ignore[union-attr]
            size += it.size  # type: ignore[union-attr]
        return b"".join(wires), size

    @staticmethod
    def _texts(items: list[Item], values: Sequence[str], cards: Sequence[Holed], prefix: SharedText | None
               ) -> tuple[str, ...]:
        """The pieces `_wire` encoded, in order (read only when the text itself is wanted)."""
        out: list[str] = []
        for it in items:
            kind = type(it)
            if kind is _CardRef:
                card = cards[it.k]  # type: ignore[union-attr]
                out += card.texts[0]
                if prefix is not None and card.holes:
                    for chunk in card.texts[1:]:
                        out.append(prefix)
                        out += chunk
            elif kind is SharedText:
                out.append(it)  # type: ignore[arg-type]
            else:
                out.append(it(values))  # type: ignore[operator]
        return tuple(out)

    def fill(self, values: list[str], html_cards: Sequence[Holed], text_cards: Sequence[Holed],
             prefix: SharedText | None, intern: Callable[[str], SharedText]) -> tuple[Assembled, Assembled]:
        escaped = list(values)
        for i in self.html_slots:
            escaped[i] = html_escape(values[i])
        html, text = self.html, self.text
        return (Assembled(*self._wire(html, escaped, html_cards, prefix, intern),
                          lambda: self._texts(html, escaped, html_cards, prefix)),
                Assembled(*self._wire(text, values, text_cards, prefix, intern),
                          lambda: self._texts(text, values, text_cards, prefix)))


class Assembled(Sequence[str]):
    """One part of one message filled from a plan: its encoded form and UTF-8 size, and its pieces
    (made when first read: sending needs only the encoded form)."""

    __slots__ = ("_make", "_pieces", "size", "wire")

    def __init__(self, wire: bytes, size: int, make: Callable[[], tuple[str, ...]]) -> None:
        self.wire, self.size = wire, size
        self._make: Callable[[], tuple[str, ...]] | None = make
        self._pieces: tuple[str, ...] = ()

    @property
    def pieces(self) -> tuple[str, ...]:
        make = self._make  # read once: two threads may ask at the same time
        if make is not None:
            self._pieces = make()
            self._make = None
        return self._pieces

    def __len__(self) -> int:
        return len(self.pieces)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return self.pieces[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.pieces)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as the pieces it stands for
        return joined, (self.pieces,)


def _runs(items: list[Item]) -> list[Item]:
    """Each stretch of consecutive shared pieces as one run."""
    out: list[Item] = []
    group: list[SharedText] = []
    for it in items:
        if type(it) is SharedText:
            group.append(it)
            continue
        if group:
            out.append(SharedText.run(group))
            group = []
        out.append(it)
    if group:
        out.append(SharedText.run(group))
    return out


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
