"""One paper as the email shows it: a card (one HTML text block, one plain-text block) per highlight
variant, that is per set of (term, field) pairs that matched.

Data is escaped here (`markupsafe.escape`) before MJML sees it, so a title such as
`</mj-text><mj-raw><script>` stays text. A `CardMaker` keeps what the variants of one paper share
(its readable title and abstract, author line, links, the words of each field and where each term
occurs in them), so a new variant costs a few joins and the wrapping of what its marks changed.
A card's parts are `SharedText`: encoded for the wire once, when made, and kept encoded with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as attribute
from functools import cached_property
from string import Formatter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from markupsafe import Markup

from newsletter.assembly import OPEN, SharedText
from newsletter.highlights import Spans, Words, esc, hit_terms, marked_escaped, marked_text, merged
from newsletter.models import Entry, Hit, Match, Update
from newsletter.query import Query, Term
from newsletter.tex import readable
from newsletter.wrapping import NBSP, WRAP, wrap

if TYPE_CHECKING:
    from newsletter.catalogue import Catalogue

ABSTRACT_LIMIT = 480
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def trim_abstract(text: str, limit: int = ABSTRACT_LIMIT) -> tuple[str, bool]:
    """The abstract cut at a sentence boundary near `limit`; True if something was cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text, False
    out = ""
    for sentence in _SENTENCE_END.split(text):
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}" if out else sentence
    if len(out) > limit * 1.5:  # one giant sentence: cut at a word
        out = out[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return out, True


def _units(text: str) -> str:
    """Keep a number with its unit on one line (`118 upvotes`, `11 Jun 2026`, `▲ 7`)."""
    return text.replace(" ", NBSP)


def _units_in_names(authors: str) -> str:
    # "(40 authors)" stays together; the names themselves may wrap
    return re.sub(r"\((\d+) ", lambda m: f"({m.group(1)}{NBSP}", re.sub(r"^(\d+) ", f"\\1{NBSP}", authors))



# --- the lines of a card ------------------------------------------------------------------------

def _authors(e: Entry, words: Catalogue | None) -> str:
    names = list(e.authors)
    count = e.author_count or len(names)
    if not names:
        if not count:
            return ""
        return words.count("authors", count) if words else f"{count} author{'s' if count != 1 else ''}"
    if len(names) <= 4:
        shown = ", ".join(names)
    else:
        shown = f"{', '.join(names[:2])}, … {names[-1]}"
    if count > len(names[:4]) or len(names) > 4:
        return f"{shown} ({words.count('authors', count) if words else f'{count} authors'})"
    return shown


def authors_line(match: Match, words: Catalogue | None = None) -> str:
    return _authors(match.entry, words)


class _EnglishOnly:
    """Catalogue defaults for the helpers here when no environment is at hand."""

    def __call__(self, key: str, **values: Any) -> str:
        return {"in_fields": "{term} in {fields}", "and": "and", "matched": "Matched {reasons}",
                "matched_profile": "Matched your profile", "field_title": "title",
                "field_abstract": "abstract", "field_author": "author"}[key].format(**values)


_ENGLISH = _EnglishOnly()


def why_line(match: Match, words: Catalogue | None = None) -> str:
    t = words or _ENGLISH
    by_term: dict[str, list[str]] = {}
    for hit in match.hits:
        by_term.setdefault(hit.term, []).append(hit.field)
    parts = [t("in_fields", term=term, fields=f" {t('and')} ".join(t(f"field_{f}") for f in dict.fromkeys(fields)))
             for term, fields in by_term.items()]
    return t("matched", reasons="; ".join(parts)) if parts else t("matched_profile")


def _links(e: Entry, words: Catalogue) -> tuple[str, list[tuple[str, str]]]:
    links = [(words(f"link_{k}"), url) for k, url in (
        ("paper", e.links.page), ("arxiv", e.links.arxiv), ("pdf", e.links.pdf),
        ("code", e.links.code), ("project", e.links.project)) if url]
    if not links:
        title = " ".join(readable(e.title).split())
        return f"https://arxiv.org/search/?query={quote_plus(title)}&searchtype=title", []
    primary = e.url or links[0][1]
    seen = {primary}
    rest = []
    for label, url in links:
        if url not in seen:
            seen.add(url)
            rest.append((label, url))
    return primary, rest


def paper_links(match: Match, words: Catalogue) -> tuple[str, list[tuple[str, str]]]:
    """The title's URL and the other links, each URL once. A paper with no link at all (a saved
    listing) gets an arXiv title search."""
    return _links(match.entry, words)


# --- cards ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Card:
    """One paper as the email shows it, in one highlight variant: its HTML (one text block) and its
    text block (without the number), each as the parts variants share (the paper with its marks, then
    the "why" line), plus the fields a custom template may use (made when first read)."""

    html_parts: tuple[str, ...]
    text_parts: tuple[str, ...]
    lead: str = ""  # the text part's section heading, before this card's number ("Trending")
    # "more / less like this": the rating links' HTML and text, cut where the issue's rating
    # prefix goes (`Links.rating`): the card stays the same for every subscriber
    rate_html: tuple[str, ...] = ()
    rate_text: tuple[str, ...] = ()
    # whether its text carries the assembly's placeholder (a hostile title): such a card is
    # rendered the direct way (found once per part, when the part is made)
    odd: bool = False
    make_fields: Callable[[], dict[str, Any]] = attribute(default=dict, compare=False, repr=False)

    @property
    def html(self) -> str:
        return "".join(self.html_parts)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @cached_property
    def fields(self) -> dict[str, Any]:
        return self.make_fields()

    def numbered(self, number: int) -> str:
        """The card as the text part shows it: its number, after its section heading if any."""
        return f"{self.lead}{number}. {self.text}"

    def rated_html(self, prefix: str) -> str:
        """The card's HTML with its rating links for one issue (`prefix`); without one, none."""
        return self.html + prefix.join(self.rate_html) if prefix and self.rate_html else self.html

    def rated_text(self, number: int, prefix: str) -> str:
        text = self.numbered(number)
        return text + prefix.join(self.rate_text) if prefix and self.rate_text else text


class _Paper:
    """What every variant of one paper's card shares, and its variants' marked fields."""

    def __init__(self, e: Entry, words: Catalogue) -> None:
        self.entry = e
        self.title = " ".join(readable(e.title).split())
        self.abstract, self.cut = trim_abstract(readable(e.abstract))
        self.authors = _authors(e, words)
        self.names = _units_in_names(self.authors)
        self.others = [x for x in (
            e.organization, _units(words.day(e.published)) if e.published else None,
            _units(f"▲ {words.count('upvotes', e.upvotes)}") if e.upvotes is not None else None,
            _units(words.count("comments", e.comments)) if e.comments else None) if x]
        self.others_html = [esc(x) for x in self.others]
        self.url, self.links = _links(e, words)
        self.lang = ' lang="en"' if words.language.split("-")[0] != "en" else ""  # paper text stays English
        self.links_html = ('<p class="l">' + " · ".join(f'<a href="{esc(u)}">{esc(label)}</a>'
                                                        for label, u in self.links) + "</p>") if self.links else ""
        self.links_text = ("\n\n" + "\n".join(f"   {label}: {u}" for label, u in self.links)) if self.links else ""
        self._words: dict[str, Words] = {}
        self._spans: dict[tuple[str, tuple[str, ...]], Spans] = {}
        self._marked: dict[tuple[str, Spans], tuple[str, str, str]] = {}
        self._bodies: dict[tuple[str, Spans, Spans, Spans], tuple[SharedText, SharedText, bool]] = {}

    def text_of(self, field: str) -> str:
        return self.title if field == "title" else self.abstract if field == "abstract" else self.authors

    def spans(self, field: str, terms: tuple[Term, ...]) -> Spans:
        if not terms:
            return ()
        # by the terms' texts (a text hashes once, a Term every time), in any order: the marks are the same
        key = (field, tuple(sorted([t.text for t in terms])) if len(terms) > 1 else (terms[0].text,))
        found = self._spans.get(key)
        if found is None:
            words = self._words.get(field)
            if words is None:
                words = self._words[field] = Words(self.text_of(field))
            found = self._spans[key] = merged([s for term in terms for s in words.occurrences(term)])
        return found

    def marked(self, field: str, spans: Spans) -> tuple[str, str, str]:
        """The field marked up as HTML, as text, and as the text part shows it (wrapped)."""
        key = (field, spans)
        found = self._marked.get(key)
        if found is None:
            if field == "title":
                text = marked_text(self.title, spans)
                found = (marked_escaped(self.title, spans), text, wrap(text, first="XXXX")[4:])
            elif field == "abstract":
                text = marked_text(self.abstract, spans)
                found = (marked_escaped(self.abstract, spans), text, wrap(text) if self.abstract else "")
            else:  # the meta line: authors (marked), organisation, date, votes, comments
                names = [marked_text(self.names, spans)] if self.authors else []
                names_html = [marked_escaped(self.names, spans)] if self.authors else []
                text = " · ".join(names + self.others)
                found = (" · ".join(names_html + self.others_html), text, wrap(text) if text else "")
            self._marked[key] = found
        return found

    def body(self, section: str, title: Spans, meta: Spans, abstract: Spans, head_html: str
             ) -> tuple[SharedText, SharedText, bool]:
        """The card's HTML and text up to its "why" line (what variants with the same marks share),
        and whether they carry the assembly's placeholder."""
        key = (section, title, meta, abstract)
        found = self._bodies.get(key)
        if found is None:
            title_html, _, title_wrapped = self.marked("title", title)
            abstract_html, _, abstract_wrapped = self.marked("abstract", abstract)
            meta_html, meta_text, meta_wrapped = self.marked("author", meta)
            html = "".join((
                head_html,
                f'<h2 class="t"{self.lang}><a href="{esc(self.url)}">{title_html}</a></h2>',
                f'<p class="m">{meta_html}</p>' if meta_html else "",
                f"<p{self.lang}>{abstract_html}</p>" if self.abstract else "",
                self.links_html))
            text = "\n".join([title_wrapped, meta_wrapped, f"   {self.url}"] if meta_text
                             else [title_wrapped, f"   {self.url}"])
            if self.abstract:
                text += "\n\n" + abstract_wrapped
            text += self.links_text
            found = self._bodies[key] = (SharedText(html), SharedText(text), OPEN in html or OPEN in text)
        return found


class CardMaker:
    """Builds cards for one catalogue, sharing each paper's parts between its variants."""

    def __init__(self, words: Catalogue, queries: dict[str, Query] | None = None, *, rating: bool = False) -> None:
        self.words = words
        self.queries: dict[str, Query] = {} if queries is None else queries
        self.rating = rating  # whether cards carry "more / less like this" (there is a web service)
        self._papers: dict[str, _Paper] = {}
        self._rates: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._terms: dict[tuple[str, str, str], tuple[Term, ...]] = {}
        self._why: dict[tuple[tuple[str, str], ...], tuple[str, str, str, bool]] = {}
        self._reasons: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}  # and escaped
        self._esc: dict[str, str] = {}
        self._around: tuple[str, str] | tuple[()] | None = None  # see `_matched`
        self._headings: dict[str, tuple[str, str]] = {}

    @property
    def parts(self) -> int:
        """How many parts are kept (each paper's marked bodies and the "why" lines)."""
        return sum(len(p._bodies) for p in self._papers.values()) + len(self._why)

    def _paper(self, e: Entry) -> _Paper:
        found = self._papers.get(e.id)
        if found is None or (found.entry is not e and found.entry != e):
            found = self._papers[e.id] = _Paper(e, self.words)
        return found

    def _hit_terms(self, hits: Sequence[Hit]) -> dict[str, tuple[Term, ...]]:
        """`hit_terms`, each hit's terms found once per maker (variants share most of their hits)."""
        out: dict[str, dict[str, Term]] = {}
        known = self._terms
        for hit in hits:
            key = (hit.query, hit.term, hit.field)
            terms = known.get(key)
            if terms is None:
                terms = known[key] = hit_terms([hit], self.queries).get(hit.field, ())
            if terms:
                into = out.setdefault(hit.field, {})
                for term in terms:
                    into.setdefault(term.text, term)
        return {f: tuple(found.values()) for f, found in out.items()}

    def _why_of(self, match: Match, pairs: tuple[tuple[str, str], ...] | None = None) -> tuple[str, str, str, bool]:
        """The "why" line as plain text, its HTML and its text part, and whether they carry the
        assembly's placeholder."""
        # a hit's term and field a second time changes nothing in the line: each once is the same key
        key = (pairs if pairs is not None and not match.why else tuple([h.pair for h in match.hits])
               or (("", match.why),))
        found = self._why.get(key)
        if found is None:
            label = self.words("why_trending" if match.why else "why")
            if match.why:
                why, why_html = match.why, esc(match.why)
            else:
                why, why_html = self._why_line(key)
            text = "\n\n" + wrap(f"{label} {why}")
            found = self._why[key] = (why, SharedText(f'<p class="w"><em>{self._escaped(label)}</em> {why_html}</p>'),
                                      SharedText(text), OPEN in why_html or OPEN in text)
        return found

    def _escaped(self, text: str) -> str:
        found = self._esc.get(text)
        if found is None:
            found = self._esc[text] = esc(text)
        return found

    def _why_line(self, hits: tuple[tuple[str, str], ...]) -> tuple[str, str]:
        """`why_line` and the same escaped for HTML, each term's reason ("x in title and abstract")
        made and escaped once per maker."""
        t = self.words
        by_term: dict[str, list[str]] = {}
        for term, field in hits:
            by_term.setdefault(term, []).append(field)
        if not by_term:
            line = t("matched_profile")
            return line, esc(line)
        parts, escaped = [], []
        for term, fields in by_term.items():
            key = (term, tuple(dict.fromkeys(fields)))
            reason = self._reasons.get(key)
            if reason is None:
                said = t("in_fields", term=term, fields=f" {t('and')} ".join(t(f"field_{f}") for f in key[1]))
                reason = self._reasons[key] = (said, esc(said))
            parts.append(reason[0])
            escaped.append(reason[1])
        around = self._matched()
        if around is None:  # a translation that does not say {reasons} exactly once
            line = t("matched", reasons="; ".join(parts))
            return line, esc(line)
        before, after = around
        return f"{before}{'; '.join(parts)}{after}", f"{self._escaped(before)}{'; '.join(escaped)}{self._escaped(after)}"

    def _matched(self) -> tuple[str, str] | None:
        """The words of "Matched {reasons}" before and after the reasons (escaping is per character:
        the line escaped is its parts escaped); None unless the wording holds `{reasons}` exactly
        once, as it is (no format spec, conversion or index: `{reasons:.30}` cuts the line)."""
        if self._around is None:
            self._around = ()
            try:
                fields = [f for f in Formatter().parse(self.words.wording("matched")) if f[1] is not None]
            except ValueError:
                fields = []
            if len(fields) == 1 and fields[0][1:] == ("reasons", "", None):
                cut = "\x00"
                line = self.words("matched", reasons=cut)
                before, _, after = line.partition(cut)
                if line.count(cut) == 1:
                    self._around = (before, after)
        return self._around or None

    def heading(self, key: str) -> tuple[str, str]:
        """A section's heading (`trending`, `updates`) as it opens the section's first card."""
        found = self._headings.get(key)
        if found is None:
            found = self._headings[key] = self._heading(key)
        return found

    def _heading(self, key: str) -> tuple[str, str]:
        title, intro = self.words(f"{key}_heading"), self.words(f"{key}_intro")
        html = (f'<h2 class="s" style="margin:4px 0 0;font-size:22px;line-height:1.3;">{esc(title)}</h2>'
                f'<p class="m">{esc(intro)}</p>')
        rule = "=" * min(len(title), WRAP)
        return html, f"{title}\n{rule}\n{wrap(intro, indent='')}\n\n"

    def card(self, match: Match, section: str = "", pairs: tuple[tuple[str, str], ...] | None = None) -> Card:
        """`pairs`: the (term, field) of the hits, each once, in their order, when the caller has them."""
        p = self._paper(match.entry)
        terms = self._hit_terms(match.hits)
        spans = (p.spans("title", terms.get("title", ())), p.spans("author", terms.get("author", ())),
                 p.spans("abstract", terms.get("abstract", ())))
        body_html, body_text, odd_body = p.body(section, *spans, self.heading(section)[0] if section else "")
        why, why_html, why_text, odd_why = self._why_of(match, pairs)
        lead = self.heading(section)[1] if section else ""

        def fields() -> dict[str, Any]:
            title_html, title_text, _ = p.marked("title", spans[0])
            abstract_html, abstract_text, _ = p.marked("abstract", spans[2])
            return {"id": match.entry.id, "title": p.title, "url": p.url, "links": list(p.links), "why": why,
                    "trimmed": p.cut, "terms": list(match.terms), "score": match.score,
                    "meta": p.marked("author", spans[1])[1], "title_html": Markup(title_html),
                    "abstract_html": Markup(abstract_html), "title_text": title_text, "abstract_text": abstract_text}

        rate = self._rate(match.entry.id) if self.rating else ((), ())
        return Card((body_html, why_html), (body_text, why_text), lead, *rate, odd=odd_body or odd_why or OPEN in lead,
                    make_fields=fields)

    def _rate(self, entry_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The paper's rating links (the same for all its variants: made once)."""
        found = self._rates.get(entry_id)
        if found is None:
            found = self._rates[entry_id] = self._rate_links(entry_id)
        return found

    def _rate_links(self, entry_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        path = quote(entry_id, safe="/:")
        more, less = self.words("more_like_this"), self.words("less_like_this")
        return (('<p class="r"><a href="', f'/more/{esc(path)}">{esc(more)}</a> · <a href="',
                 f'/less/{esc(path)}">{esc(less)}</a></p>'),
                (f"\n   {more}: ", f"/more/{path}\n   {less}: ", f"/less/{path}"))

    def update_card(self, update: Update, first: bool) -> Card:
        """A paper received before, in one short block: its title, what changed, its links."""
        p = self._paper(update.entry)
        head_html, head_text = self.heading("updates") if first else ("", "")
        label = self.words("what_changed")
        html = "".join((head_html, f'<p class="t"{p.lang}><a href="{esc(p.url)}">{esc(p.title)}</a></p>',
                        f'<p class="w"><em>{esc(label)}</em> {esc(update.detail)}</p>', p.links_html))
        text = wrap(p.title, first="XXXX")[4:] + f"\n   {p.url}\n\n" + wrap(f"{label} {update.detail}") + p.links_text
        fields = {"id": update.entry.id, "title": p.title, "url": p.url, "links": list(p.links), "why": update.detail,
                  "trimmed": False, "terms": [], "score": 0.0, "meta": "", "title_html": Markup(esc(p.title)),
                  "abstract_html": Markup(""), "title_text": p.title, "abstract_text": ""}
        return Card((html,), (text,), head_text, odd=any(OPEN in x for x in (html, text, head_text)),
                    make_fields=fields.copy)


def make_card(match: Match, words: Catalogue, queries: dict[str, Query] | None = None) -> Card:
    return CardMaker(words, queries).card(match)
