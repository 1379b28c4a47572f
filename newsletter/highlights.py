"""Highlights: exactly the spans of a text that the matched query terms cover (whole words, phrases
in order, prefixes by their beginning), marked up for HTML (escaped) and for the text part.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from markupsafe import Markup, escape

from newsletter.models import Hit
from newsletter.query import Query, Term, parse
from newsletter.text import stem, word_spans

Spans = tuple[tuple[int, int], ...]


def esc(value: str) -> str:
    """`value` escaped for HTML, as a plain string."""
    return str(escape(value))


def hit_terms(hits: Iterable[Hit], queries: dict[str, Query] | None = None) -> dict[str, tuple[Term, ...]]:
    """For each field, the query terms that matched there (a scoped term only in its field)."""
    queries = {} if queries is None else queries
    out: dict[str, dict[Term, None]] = {}
    for hit in hits:
        q = queries.get(hit.query)
        if q is None:
            try:
                q = queries[hit.query] = parse(hit.query)
            except ValueError:
                continue
        for term in q.positive_terms():
            if term.text == hit.term and (term.field is None or term.field == hit.field):
                out.setdefault(hit.field, {})[term] = None
    return {f: tuple(terms) for f, terms in out.items()}


class Words:
    """The words of one text and their stems, for finding terms in it."""

    def __init__(self, text: str) -> None:
        self.tokens = word_spans(text)
        self.stems = [stem(w) for _, _, w in self.tokens]
        self.found: dict[str, list[tuple[int, int]]] = {}  # by the term's text (its scope included)

    def occurrences(self, term: Term) -> list[tuple[int, int]]:
        """(start, end) of each whole occurrence of `term`: all the words of a phrase in order and
        adjacent (as matching reads them), a prefix term's last word by its beginning."""
        found = self.found.get(term.text)
        if found is None:
            tokens, stems = self.tokens, self.stems
            k = len(term.words)
            exact = term.words[:-1] if term.prefix else term.words
            found = self.found[term.text] = [
                (tokens[i][0], tokens[i + k - 1][1]) for i in range(len(tokens) - k + 1)
                if all(stems[i + j] == w for j, w in enumerate(exact))
                and (not term.prefix or tokens[i + k - 1][2].startswith(term.words[-1]))]
        return found


def merged(found: list[tuple[int, int]]) -> Spans:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start < merged[-1][1]:  # overlapping occurrences: one mark
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def highlight_spans(text: str, terms: Sequence[Term]) -> list[tuple[int, int]]:
    """(start, end) of every whole occurrence of each term in `text`, overlapping ones merged."""
    if not terms:
        return []
    words = Words(text)
    return list(merged([span for term in terms for span in words.occurrences(term)]))


def marked_escaped(text: str, spans: Sequence[tuple[int, int]]) -> str:
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out += (esc(text[pos:start]), '<strong class="hit">', esc(text[start:end]), "</strong>")
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def marked_html(text: str, spans: Sequence[tuple[int, int]]) -> Markup:
    return Markup(marked_escaped(text, spans))


def marked_text(text: str, spans: Sequence[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start] + "*" + text[start:end] + "*")
        pos = end
    return "".join(out) + text[pos:]
