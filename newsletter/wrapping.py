"""The text part's lines: text wrapped at WRAP columns exactly as `textwrap` wraps it, faster.

A number keeps its unit on one line by a no-break space (NBSP) while wrapping; it becomes a plain
space after.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache

WRAP = 72
NBSP = "\u00a0"

# text that textwrap treats in ways the fast path does not: tabs and line breaks, or a "word" that
# is all white space to str.strip() (a lone no-break space)
_ODD_SPACE = re.compile(r"[\t\n\x0b\x0c\r]|(?<![^ ])[^\S ]+(?![^ ])")
_ODD_ASCII = re.compile(r"[\t-\r\x1c-\x1f]")  # the same test for ASCII text, cheaper (and stricter)
_SPACES = re.compile(" *")


@lru_cache(maxsize=16)
def _line(width: int) -> re.Pattern[str]:
    """The longest run of words (with the spaces between) of at most `width` characters."""
    return re.compile(f"[^ ](?:.{{0,{width - 2}}}[^ ])?(?= |$)", re.S)


def wrap_lines(text: str, width: int, initial: str, subsequent: str) -> list[str]:
    """`textwrap.wrap(text, width, initial_indent=initial, subsequent_indent=subsequent,
    break_long_words=False, break_on_hyphens=False)`, line for line, without its per-chunk loop."""
    if (not text or text[0] == " " or width - max(len(initial), len(subsequent)) < 2
            or (_ODD_ASCII if text.isascii() else _ODD_SPACE).search(text)):
        return textwrap.wrap(text, width, initial_indent=initial, subsequent_indent=subsequent,
                             break_long_words=False, break_on_hyphens=False)
    lines: list[str] = []
    pos, n, indent = 0, len(text), initial
    while pos < n:
        m = _line(width - len(indent)).match(text, pos)
        if m is not None:
            end = m.end()
        else:  # a word longer than the line: alone on its line
            end = text.find(" ", pos)
            end = n if end < 0 else end
        lines.append(indent + text[pos:end])
        pos = _SPACES.match(text, end).end()  # type: ignore[union-attr]  # " *" always matches
        indent = subsequent
    return lines


def wrap(text: str, indent: str = "   ", first: str | None = None) -> str:
    """`text` wrapped at WRAP columns for the text part; no-break spaces become spaces after."""
    lines = wrap_lines(text, WRAP, indent if first is None else first, indent)
    return "\n".join(lines).replace(NBSP, " ")
