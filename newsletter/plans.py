"""Plans: the template's output for one shape of issue, rendered once with a hole for every value.

How a plan is made: the template is rendered once with a sentinel for each non-empty string value
of the context (names, links, subject, ...) and the real values of everything that decides its
shape (how many papers, which values are empty, numbers); the pieces that output is cut into are
then filled per subscriber with the values, escaped as Jinja would have escaped them. Only the
default theme is planned (a user template may do anything with a value); each plan is checked
against a real rendering before it is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from markupsafe import Markup

from newsletter.assembly import (CLOSE, SOFT_BREAK, Frame, Holed, SharedText, assemble, fill, hollow, joined,
                                 qp_sized, split_tokens, token)

_SLOT_OPEN = "@@nl-slot-"
_SLOT = re.compile(f"{_SLOT_OPEN}(\\d+){CLOSE}")
# values that differ from one subscriber to the next: pieces holding them are not kept for reuse
_PERSONAL = ("subscriber", "profile", "unsubscribe_url", "change_url", "view_url", "rate_url", "issue.id", "near_")


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
                    wire, n = qp_sized(piece)
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
