"""Reading untrusted source data: text decoding, typed fields, and the per-item loop that skips bad items.

A parser hands each item to `collect`, whose `build` reads fields through the checked accessors
here; a wrong type or an out-of-range value raises ItemError, which skips that item (named, with the
reason) and lets the rest go on. Only when no item at all is usable is the source itself in error.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from newsletter.entries import check_count, parse_date
from newsletter.errors import ItemError, SourceError
from newsletter.models import Entry, Parsed
from newsletter.text import clean_text, visible

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: FF FE 00 00
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig"),
)
_DIGITS = re.compile(r"\s*[0-9]{1,30}\s*")  # longer strings are not counts (and int() caps at 4,300)


def sniff(data: bytes) -> str:
    """The Unicode encoding of `data`: by its byte-order mark, else by the NUL pattern of an ASCII
    first character (`<`, `[`, `{`) in UTF-16/32 without a mark, else UTF-8."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    head = data[:4]
    if len(head) == 4 and head[0] and not any(head[1:]):
        return "utf-32-le"
    if len(head) == 4 and head[3] and not any(head[:3]):
        return "utf-32-be"
    if len(head) >= 2 and head[0] and not head[1]:
        return "utf-16-le"
    if len(head) >= 2 and head[1] and not head[0]:
        return "utf-16-be"
    return "utf-8"


def decode(data: bytes, source: str) -> str:
    """The text of `data` in its sniffed encoding; invalid bytes are this source's error."""
    encoding = sniff(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = encoding.replace("-sig", "").upper()
        raise SourceError(f"source '{source}': not {shown} text (invalid byte at offset {exc.start}); "
                          f"save the file as UTF-8") from None


def load_json(data: str | bytes, source: str) -> Any:
    """json.loads, except that nesting too deep for Python is this source's error, and an integer
    too long to be a count stays text (the item check refuses it, not Python's 4,300-digit limit)."""
    try:
        return json.loads(data, parse_int=_int_or_text)
    except RecursionError:
        raise SourceError(f"source '{source}': JSON nested too deeply to read") from None


def _int_or_text(digits: str) -> int | str:
    return int(digits) if len(digits) <= 30 else digits


def collect(source: str, items: Sequence[Any], build: Callable[[Any], Entry | None],
            title_of: Callable[[Any], Any] = lambda item: None, noun: str = "item") -> Parsed:
    """Build an entry from each item; an ItemError skips that item and names it with the reason."""
    entries: list[Entry] = []
    skipped: list[str] = []
    for n, item in enumerate(items, start=1):
        try:
            entry = build(item)
        except ItemError as exc:
            skipped.append(f"{_label(noun, n, title_of(item))}: {exc}")
            continue
        if entry is not None:
            entries.append(entry)
    if skipped and not entries:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise SourceError(f"source '{source}': no usable item: {skipped[0]}{more}")
    return Parsed(tuple(entries), tuple(skipped))


def _label(noun: str, n: int, title: Any) -> str:
    if isinstance(title, str) and title.strip():
        shown = clean_text(title[:200])
        if visible(shown):
            return f"{noun} {n} ('{shown[:60]}{'…' if len(shown) > 60 else ''}')"
    return f"{noun} {n}"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A short quotation of a scalar that was refused (a 5,000-digit string is not repeated)."""
    if isinstance(value, str):
        return f"'{value[:20]}…' ({len(value)} characters)" if len(value) > 30 else repr(value)
    return repr(value) if isinstance(value, float) else _kind(value)


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ItemError(f"{what} is {_kind(value)}, not an object")
    return value


def text(item: dict[str, Any], key: str) -> str | None:
    """An optional text field: missing or null is None; anything but text is the item's error."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ItemError(f"'{key}' is {_kind(value)}, not text")
    return value


def count(item: dict[str, Any], key: str, *, digit_strings: bool = False) -> int | None:
    """An optional count: a whole number from 0 to 2**63-1 (what SQLite can store)."""
    value = item.get(key)
    if value is None:
        return None
    if digit_strings and isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ItemError(f"'{key}' is {_shown(value)}, not a whole number")
    return check_count(key, value)


def names(item: dict[str, Any], key: str, *, comma_string: bool = False) -> list[str]:
    """An optional list of names (text), or one comma-separated text if `comma_string`."""
    value = item.get(key)
    if value is None:
        return []
    if comma_string and isinstance(value, str):
        return [a.strip() for a in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ItemError(f"'{key}' is {_kind(value)}, not a list of names")
    return value


def day(item: dict[str, Any], key: str, *, strict: bool) -> date | None:
    """An optional date (ISO 8601 text); if `strict`, text that is not a date is the item's error."""
    value = item.get(key)
    if value is None or value == "":
        return None
    found = parse_date(value)
    if found is None and strict:
        raise ItemError(f"'{key}' is {_shown(value)}, not a date (YYYY-MM-DD)")
    return found
