"""Issue -> subject, preheader, HTML (Jinja2 -> MJML -> mjml-python) and the plain-text part.

Data is escaped by Jinja (autoescape on for *.mjml.j2) or by `markupsafe.escape` here before MJML
compiles it, so a title such as `</mj-text><mj-raw><script>` stays text. Render once, assemble many:
a `SlotRenderer` builds each paper's card (per highlight variant) once, compiles the MJML frame once
per shape, and assembles each subscriber's HTML and text from those pieces; the result is the same,
byte for byte, as compiling that subscriber's whole document (`compile_whole`).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup, escape

from newsletter.errors import RenderError
from newsletter.models import Hit, Issue, Match, RenderedIssue, Settings
from newsletter.query import Query, Term, parse
from newsletter.tex import readable
from newsletter.text import stem, word_spans

ABSTRACT_LIMIT = 480
HTML_BUDGET = 102_000  # bytes of HTML: Gmail clips a message body above ~102 KB and hides the footer
WRAP = 72
NBSP = "\u00a0"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
# Placeholders while a frame is assembled (MJML drops private-use characters, so plain ASCII);
# output that holds them other than where they were put takes the direct path
_OPEN, _CLOSE = "@@nl-hole-", "@@"
_TOKEN = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_TEXT_BLOCK = re.compile(r"(<mj-(?:text|title)\b[^>]*(?<!/)>)(.*?)(</mj-(?:text|title)>)", re.S)


def default_templates() -> Path:
    return Path(str(resources.files("newsletter.templates")))


def environment(user_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if user_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(user_dir)))
    loaders.append(jinja2.FileSystemLoader(str(default_templates())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def header_text(value: str) -> str:
    """A value safe for a header: no control characters, no encoded-word openers."""
    value = _HEADER_UNSAFE.sub(" ", value)
    return re.sub(r"\s+", " ", value.replace("=?", "= ?")).strip()


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


# --- the message catalogue -------------------------------------------------------------------

class Catalogue:
    """The theme's words in one language: `catalogue/<language>.json` from the templates folder
    (a user's folder first), English for any key or language it lacks."""

    def __init__(self, env: jinja2.Environment, language: str) -> None:
        self.language = language
        self.words: dict[str, Any] = self._load(env, "en")
        if language != "en":
            self.words = {**self.words, **self._load(env, language.split("-")[0].lower())}

    @staticmethod
    def _load(env: jinja2.Environment, code: str) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z]{2,3}", code) or env.loader is None:
            return {}
        try:
            source = env.loader.get_source(env, f"catalogue/{code}.json")[0]
        except jinja2.TemplateNotFound:
            return {}
        try:
            found = json.loads(source)
        except ValueError as exc:
            raise RenderError(f"catalogue/{code}.json: not valid JSON ({exc})") from exc
        return found if isinstance(found, dict) else {}

    def __call__(self, key: str, **values: Any) -> str:
        return str(self.words.get(key, key)).format(**values)

    def count(self, key: str, n: int, **values: Any) -> str:
        return self(f"{key}_one" if n == 1 else f"{key}_many", n=n, **values)

    def day(self, d: date | datetime) -> str:
        return self("date", day=d.day, month=self.words["months"][d.month - 1], year=d.year)


def _units(text: str) -> str:
    """Keep a number with its unit on one line (`118 upvotes`, `11 Jun 2026`, `▲ 7`)."""
    return text.replace(" ", NBSP)


# --- highlights: exactly the matched spans ----------------------------------------------------

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


def highlight_spans(text: str, terms: Sequence[Term]) -> list[tuple[int, int]]:
    """(start, end) of every whole occurrence of each term in `text`: all the words of a phrase in
    order and adjacent (as matching reads them), a prefix term's last word by its beginning."""
    if not terms:
        return []
    tokens = word_spans(text)
    stems = [stem(w) for _, _, w in tokens]
    found: list[tuple[int, int]] = []
    for term in terms:
        k = len(term.words)
        exact = term.words[:-1] if term.prefix else term.words
        for i in range(len(tokens) - k + 1):
            if all(stems[i + j] == w for j, w in enumerate(exact)) and (
                    not term.prefix or tokens[i + k - 1][2].startswith(term.words[-1])):
                found.append((tokens[i][0], tokens[i + k - 1][1]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start < merged[-1][1]:  # overlapping occurrences: one mark
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def marked_html(text: str, spans: Sequence[tuple[int, int]]) -> Markup:
    out, pos = [], 0
    for start, end in spans:
        out.append(escape(text[pos:start]))
        out.append(Markup('<strong class="hit">') + escape(text[start:end]) + Markup("</strong>"))
        pos = end
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def marked_text(text: str, spans: Sequence[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start] + "*" + text[start:end] + "*")
        pos = end
    return "".join(out) + text[pos:]


# --- one paper ---------------------------------------------------------------------------------

def authors_line(match: Match, words: Catalogue | None = None) -> str:
    e = match.entry
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


def why_line(match: Match, words: Catalogue | None = None) -> str:
    t = words or _ENGLISH
    by_term: dict[str, list[str]] = {}
    for hit in match.hits:
        by_term.setdefault(hit.term, []).append(hit.field)
    parts = [t("in_fields", term=term, fields=f" {t('and')} ".join(t(f"field_{f}") for f in dict.fromkeys(fields)))
             for term, fields in by_term.items()]
    return t("matched", reasons="; ".join(parts)) if parts else t("matched_profile")


class _EnglishOnly:
    """Catalogue defaults for the helpers above when no environment is at hand."""

    def __call__(self, key: str, **values: Any) -> str:
        return {"in_fields": "{term} in {fields}", "and": "and", "matched": "Matched {reasons}",
                "matched_profile": "Matched your profile", "field_title": "title",
                "field_abstract": "abstract", "field_author": "author"}[key].format(**values)


_ENGLISH = _EnglishOnly()


def paper_links(match: Match, words: Catalogue) -> tuple[str, list[tuple[str, str]]]:
    """The title's URL and the other links, each URL once. A paper with no link at all (a saved
    listing) gets an arXiv title search."""
    e = match.entry
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


@dataclass(frozen=True)
class Card:
    """One paper as the email shows it, in one highlight variant: its HTML (one text block) and its
    text block (without the number), plus the fields a custom template may use."""

    html: str
    text: str
    fields: dict[str, Any]


def _wrapped(text: str, indent: str = "   ", first: str | None = None) -> str:
    lines = textwrap.wrap(text, WRAP, initial_indent=indent if first is None else first,
                          subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines).replace(NBSP, " ")


def make_card(match: Match, words: Catalogue, queries: dict[str, Query] | None = None) -> Card:
    e = match.entry
    terms = hit_terms(match.hits, queries)
    title = " ".join(readable(e.title).split())
    abstract, cut = trim_abstract(readable(e.abstract))
    title_spans = highlight_spans(title, terms.get("title", ()))
    abstract_spans = highlight_spans(abstract, terms.get("abstract", ()))
    authors = authors_line(match, words)
    author_spans = highlight_spans(authors, terms.get("author", ()))
    others = [x for x in (e.organization, _units(words.day(e.published)) if e.published else None,
                          _units(f"▲ {words.count('upvotes', e.upvotes)}") if e.upvotes is not None else None,
                          _units(words.count("comments", e.comments)) if e.comments else None) if x]
    url, links = paper_links(match, words)
    why = why_line(match, words)
    english = words.language.split("-")[0] != "en"  # paper text stays English: say so per element
    lang = Markup(' lang="en"') if english else Markup("")
    meta_html = Markup(" · ").join(
        ([marked_html(_units_in_names(authors), author_spans)] if authors else []) + [escape(x) for x in others])
    html = Markup("").join([
        Markup('<h2 class="t"{lang}><a href="{url}">{title}</a></h2>').format(
            lang=lang, url=url, title=marked_html(title, title_spans)),
        Markup('<p class="m">{meta}</p>').format(meta=meta_html) if meta_html else Markup(""),
        Markup("<p{lang}>{abstract}</p>").format(lang=lang, abstract=marked_html(abstract, abstract_spans))
        if abstract else Markup(""),
        Markup('<p class="l">{links}</p>').format(links=Markup(" · ").join(
            Markup('<a href="{u}">{label}</a>').format(u=u, label=label) for label, u in links)) if links else Markup(""),
        Markup('<p class="w"><em>{why_label}</em> {why}</p>').format(why_label=words("why"), why=why),
    ])
    meta_text = " · ".join(([marked_text(_units_in_names(authors), author_spans)] if authors else []) + others)
    blocks = [_wrapped(marked_text(title, title_spans), first="XXXX")[4:]]
    if meta_text:
        blocks.append(_wrapped(meta_text))
    blocks.append(f"   {url}")
    text = "\n".join(blocks)
    if abstract:
        text += "\n\n" + _wrapped(marked_text(abstract, abstract_spans))
    if links:
        text += "\n\n" + "\n".join(f"   {label}: {u}" for label, u in links)
    text += "\n\n" + _wrapped(f"{words('why')} {why}")
    fields = {"id": e.id, "title": title, "url": url, "links": links, "why": why, "trimmed": cut,
              "terms": list(match.terms), "score": match.score, "meta": meta_text,
              "title_html": marked_html(title, title_spans), "abstract_html": marked_html(abstract, abstract_spans),
              "title_text": marked_text(title, title_spans), "abstract_text": marked_text(abstract, abstract_spans)}
    return Card(str(html), text, fields)


def _units_in_names(authors: str) -> str:
    # "(40 authors)" stays together; the names themselves may wrap
    return re.sub(r"\((\d+) ", lambda m: f"({m.group(1)}{NBSP}", re.sub(r"^(\d+) ", f"\\1{NBSP}", authors))


# --- the issue ---------------------------------------------------------------------------------

def subject_line(settings: Settings, issue: Issue, words: Catalogue | None = None,
                 total: int | None = None) -> str:
    """`total`: how many papers matched, when more matched than the issue shows."""
    words = words or Catalogue(environment(settings.templates), settings.language)
    local = issue.slot.astimezone(ZoneInfo(issue.subscriber.timezone))
    n = len(issue.matches) if total is None else total
    key = "subject_none" if not n else ("subject_one" if n == 1 else "subject_many")
    return header_text(words(key, title=settings.title, date=words.day(local), n=n))


def preheader(issue: Issue, words: Catalogue | None = None, total: int | None = None) -> str:
    """The first visible sentence of the email (inbox previews show it): nothing is hidden."""
    words = words or Catalogue(environment(None), "en")
    n = len(issue.matches) if total is None else total
    if not issue.matches:
        return words("preheader_none")
    first = " ".join(readable(issue.matches[0].entry.title).split())
    if n == 1:
        return words("preheader_one", first=first)
    if n == 2:
        return words("preheader_two", first=first)
    return words("preheader_many", n=n, first=first, rest=n - 1)


def profile_summary(issue: Issue, words: Catalogue) -> dict[str, Any]:
    s = issue.subscriber
    keywords = ", ".join(s.keywords)
    excluding = f"; {words('excluding')} {', '.join(s.exclude)}" if s.exclude else ""
    limits = words.count("limits", s.max_entries, schedule=f'"{s.schedule}"', timezone=s.timezone)
    return {"keywords": list(s.keywords), "exclude": list(s.exclude), "schedule": s.schedule,
            "timezone": s.timezone, "max_entries": s.max_entries, "limits": limits,
            "text": _wrapped(f"{words('your_profile')} {keywords}{excluding}.", indent="") + "\n"
            + _wrapped(limits, indent="")}


class SlotRenderer:
    """Renders many issues of one slot: each card (paper x highlight variant) is built once, the
    MJML frame is compiled once per shape, and each subscriber's HTML and text are assembled from
    those pieces. Reuse one per batch; `render` gives what `rendering.render` gives, byte for byte."""

    def __init__(self, settings: Settings, env: jinja2.Environment | None = None) -> None:
        self.settings = settings
        self.env = env or environment(settings.templates)
        self.words = Catalogue(self.env, settings.language)
        self._queries: dict[str, Query] = {}
        self._cards: dict[tuple[str, tuple[tuple[str, str], ...]], Card] = {}
        self._html_cards: dict[str, SharedText] = {}
        self._text_cards: dict[tuple[str, int], SharedText] = {}
        self._frames: dict[str, tuple[list[SharedText], list[int]] | None] = {}

    def card(self, match: Match) -> Card:
        # a card depends on which terms matched in which fields, not on the queries they came from
        key = (match.entry.id, tuple(dict.fromkeys((h.term, h.field) for h in match.hits)))
        found = self._cards.get(key)
        if found is None:
            found = self._cards[key] = make_card(match, self.words, self._queries)
        return found

    def render(self, issue: Issue, *, unsubscribe_url: str, change_url: str,
               budget: int | None = None) -> RenderedIssue:
        """One issue. With `budget` (bytes of HTML), the papers that do not fit are left out, last
        first, and a line says how many (linking the web archive when base_url is set)."""
        full = self._render(issue, unsubscribe_url, change_url, total=len(issue.matches))
        if budget is None or len(full.html.encode("utf-8")) <= budget:
            return full
        lo, hi, best = 0, len(issue.matches) - 1, None
        while lo <= hi:  # the most papers that fit
            mid = (lo + hi) // 2
            attempt = self._render(replace(issue, matches=issue.matches[:mid]), unsubscribe_url, change_url,
                                   total=len(issue.matches))
            if len(attempt.html.encode("utf-8")) <= budget:
                best, lo = attempt, mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise RenderError(f"the email does not fit in {budget} bytes of HTML even without papers: "
                              "raise the budget or shorten the template")
        return best

    def _render(self, issue: Issue, unsubscribe_url: str, change_url: str, total: int) -> RenderedIssue:
        words = self.words
        cards = [self.card(m) for m in issue.matches]
        dropped = total - len(issue.matches)
        local = issue.slot.astimezone(ZoneInfo(issue.subscriber.timezone))
        subject = subject_line(self.settings, issue, words, total)
        pre = preheader(issue, words, total)
        html_tokens = [self._html_card(c) for c in cards]
        text_tokens = [self._text_card(c, i) for i, c in enumerate(cards, start=1)]
        more = None
        if dropped:
            base = self.settings.base_url
            more = {"count": dropped, "url": f"{base}/issues/{issue.id}" if base else None,
                    "label": words.count("more_web" if base else "more_local", dropped)}
        context = {
            "newsletter": {"title": self.settings.title, "language": self.settings.language},
            "subscriber": {"email": issue.subscriber.email, "name": issue.subscriber.name},
            "issue": {"id": issue.id, "date": words.day(local), "count": len(issue.matches), "first": issue.first},
            "subject": subject,
            "preheader": pre,
            "preheader_text": _wrapped(pre, indent=""),
            "papers": [{**c.fields, "card_html": Markup(f"{_OPEN}{k}{_CLOSE}"), "card_text": f"{_OPEN}{k}{_CLOSE}"}
                       for k, c in enumerate(cards)],
            "more": more,
            "profile": profile_summary(issue, words),
            "unsubscribe_url": unsubscribe_url,
            "change_url": change_url,
            "t": words,
        }
        source = _render_template(self.env, "issue.mjml.j2", context)
        text_source = _render_template(self.env, "issue.txt.j2", context)
        html_pieces = self._assemble_html(source, html_tokens, context)
        text_pieces = _fill(text_source, text_tokens) if _split_tokens(text_source, len(cards)) else None
        if html_pieces is None or text_pieces is None:  # data carried a placeholder character
            return self._render_whole(issue, cards, context, subject, pre, dropped)
        return RenderedIssue(issue=issue, subject=subject, preheader=pre, html="".join(html_pieces),
                             text="".join(text_pieces), dropped=dropped, html_pieces=tuple(html_pieces),
                             text_pieces=tuple(text_pieces))

    def _html_card(self, card: Card) -> SharedText:
        found = self._html_cards.get(card.html)
        if found is None:
            found = self._html_cards[card.html] = SharedText(card.html)
        return found

    def _text_card(self, card: Card, number: int) -> SharedText:
        key = (card.text, number)
        found = self._text_cards.get(key)
        if found is None:
            found = self._text_cards[key] = SharedText(f"{number}. {card.text}")
        return found

    def _assemble_html(self, source: str, cards: list[SharedText], context: dict[str, Any]) -> list[str] | None:
        if _split_tokens(source, len(cards)) is None:
            return None
        blocks: list[str] = []

        def hole(m: re.Match[str]) -> str:
            blocks.append(m.group(2))
            return f"{m.group(1)}{_OPEN}{len(blocks) - 1}{_CLOSE}{m.group(3)}"

        skeleton = _TEXT_BLOCK.sub(hole, source)
        if _split_tokens(skeleton, len(blocks)) is None:  # a card outside a text block: no shortcut
            return None
        frame = self._frames.get(skeleton)
        if frame is None:
            frame = self._frames[skeleton] = _frame(_compile(skeleton), len(blocks))
        if frame is None:
            return None  # MJML did something unexpected with a block: no shortcut for this template
        static, order = frame
        filled = [_fill(b, cards) if _OPEN in b else [b] for b in blocks]
        out: list[str] = [static[0]]
        for i, k in enumerate(order):
            out.extend(filled[k])
            out.append(static[i + 1])
        return [p for p in out if p]

    def _render_whole(self, issue: Issue, cards: list[Card], context: dict[str, Any], subject: str,
                      pre: str, dropped: int) -> RenderedIssue:
        html, text = compile_whole(self.env, context, cards)
        return RenderedIssue(issue=issue, subject=subject, preheader=pre, html=html, text=text, dropped=dropped)


class SharedText(str):
    """A piece of a rendered email shared by many subscribers' messages; message.build keeps its
    quoted-printable form on it (`wire`) so it is encoded once."""

    wire: bytes


def _split_tokens(source: str, n: int) -> list[str] | None:
    """`source` split at its placeholders, which must be exactly 0..n-1, once each, in order, with
    no stray placeholder character (data that carries one takes the direct path)."""
    parts = _TOKEN.split(source)
    if parts[1::2] != [str(i) for i in range(n)]:
        return None
    if any(_OPEN in p for p in parts[0::2]):
        return None
    return parts


def _frame(compiled: str, blocks: int) -> tuple[list[SharedText], list[int]] | None:
    """A compiled skeleton as its static pieces and, between them, which text block goes there
    (MJML may use a block twice: the title is also the body's aria-label)."""
    parts = _TOKEN.split(compiled)
    order = [int(k) for k in parts[1::2]]
    if any(k >= blocks for k in order) or any(_OPEN in p for p in parts[0::2]):
        return None
    return [SharedText(p) for p in parts[0::2]], order


def _fill(source: str, pieces: Sequence[str]) -> list[str]:
    """`source` (already checked by `_split_tokens`) with each placeholder replaced by its piece."""
    out: list[str] = []
    for i, part in enumerate(_TOKEN.split(source)):
        if i % 2:
            out.append(pieces[int(part)])
        elif part:
            out.append(part)
    return out


def compile_whole(env: jinja2.Environment, context: dict[str, Any], cards: Sequence[Card]) -> tuple[str, str]:
    """HTML and text rendered the direct way: the whole document through Jinja and MJML at once
    (the reference the assembled output is tested against, and the path for odd data)."""
    whole = {**context, "papers": [{**c.fields, "card_html": Markup(c.html), "card_text": f"{i}. {c.text}"}
                                   for i, c in enumerate(cards, start=1)]}
    return (_compile(_render_template(env, "issue.mjml.j2", whole)),
            _render_template(env, "issue.txt.j2", whole))


def _compile(source: str) -> str:
    try:
        return mjml.mjml2html(source)
    except ValueError as exc:  # mjml-python reports MJML errors as ValueError; wrap at this edge
        raise RenderError(f"issue.mjml.j2: MJML did not compile: {exc}") from exc


def render(issue: Issue, settings: Settings, *, unsubscribe_url: str, change_url: str,
           env: jinja2.Environment | None = None, cache: dict[Any, Any] | None = None,
           budget: int | None = None) -> RenderedIssue:
    """Render one issue. `cache` (one dict per batch) keeps a SlotRenderer so that subscribers of
    the batch share cards and frames; `budget` caps the HTML size (see `fit`)."""
    renderer = _renderer(settings, env, cache)
    return renderer.render(issue, unsubscribe_url=unsubscribe_url, change_url=change_url, budget=budget)


def fit(issue: Issue, settings: Settings, *, unsubscribe_url: str, change_url: str,
        env: jinja2.Environment | None = None, cache: dict[Any, Any] | None = None,
        budget: int = HTML_BUDGET) -> RenderedIssue:
    """The issue rendered within `budget` bytes of HTML (Gmail clips above ~102 KB, hiding the
    footer and its unsubscribe link). Papers that do not fit are dropped from the end; the result's
    `dropped` says how many and its issue holds only the papers shown."""
    return render(issue, settings, unsubscribe_url=unsubscribe_url, change_url=change_url, env=env,
                  cache=cache, budget=budget)


def _renderer(settings: Settings, env: jinja2.Environment | None, cache: dict[Any, Any] | None) -> SlotRenderer:
    if cache is None:
        return SlotRenderer(settings, env)
    key = (SlotRenderer, id(env), id(settings))
    found = cache.get(key)
    if not isinstance(found, SlotRenderer) or found.settings is not settings:
        found = cache[key] = SlotRenderer(settings, env)
    return found


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template '{exc.name}' not found in the templates folder or the default theme") from exc
    except jinja2.TemplateError as exc:
        raise RenderError(f"{_template_position(exc, name)}: {exc.message or exc}") from exc


def _template_position(exc: BaseException, name: str) -> str:
    """file:line of the template frame an error came from (Jinja rewrites tracebacks to it)."""
    tb, where = exc.__traceback__, name
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
