"""Issue -> subject, preheader, HTML (Jinja2 -> MJML -> mjml-python) and the plain-text part.

Data is escaped by Jinja (autoescape on for *.mjml.j2) or by `markupsafe.escape` (cards.py) before
MJML compiles it, so a title such as `</mj-text><mj-raw><script>` stays text. Render once, assemble
many: a `SlotRenderer` builds each paper's card (per highlight variant) once, compiles the MJML
frame once per shape, and assembles each subscriber's HTML and text from those pieces (assembly.py,
plans.py); the result is the same, byte for byte, as compiling that subscriber's whole document (`compile_whole`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup

from newsletter.assembly import (OPEN, Frame, Holed, Interned, Pieces, SharedText, assemble, fill, frame, hollow, joined,
                                 split_tokens, token)
from newsletter.plans import Plan, sentinels, shape
from newsletter.cards import ABSTRACT_LIMIT, Card, CardMaker, authors_line, make_card, paper_links, trim_abstract, why_line
from newsletter.highlights import highlight_spans, hit_terms, marked_html, marked_text
from newsletter.catalogue import Catalogue
from newsletter.errors import RenderError
from newsletter.models import Issue, Match, RenderedIssue, Settings, Update
from newsletter.query import Query
from newsletter.tex import readable
from newsletter.wrapping import NBSP, WRAP, wrap

__all__ = ["ABSTRACT_LIMIT", "HTML_BUDGET", "NBSP", "WRAP", "Card", "Catalogue", "SharedText", "SlotRenderer",
           "authors_line", "compile_whole", "default_templates", "environment", "fit", "header_text",
           "highlight_spans", "hit_terms", "make_card", "marked_html", "marked_text", "paper_links", "preheader",
           "profile_summary", "render", "subject_line", "trim_abstract", "why_line"]

HTML_BUDGET = 102_000  # bytes of HTML: Gmail clips a message body above ~102 KB and hides the footer
PLANS_KEPT = 1_000  # shapes of issue planned per renderer (tens of KB each) before it starts again
# subjects and preheaders kept per renderer (a few hundred bytes each; one per time zone, paper
# count and first paper: ~7,700 for one worker's share of bench/end_to_end's 100,000 subscribers)
HEADS_KEPT = 20_000
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


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


# --- the issue ---------------------------------------------------------------------------------

def subject_line(settings: Settings, issue: Issue, words: Catalogue | None = None,
                 total: int | None = None) -> str:
    """`total`: how many papers matched, when more matched than the issue shows."""
    words = words or Catalogue(environment(settings.templates), settings.language)
    local = issue.slot.astimezone(ZoneInfo(issue.subscriber.timezone))
    n = len(issue.matches) if total is None else total
    if not n and issue.updates:  # only papers received before that changed
        return header_text(words.count("subject_updates", len(issue.updates), title=settings.title,
                                       date=words.day(local)))
    key = "subject_none" if not n else ("subject_one" if n == 1 else "subject_many")
    return header_text(words(key, title=settings.title, date=words.day(local), n=n))


def preheader(issue: Issue, words: Catalogue | None = None, total: int | None = None) -> str:
    """The first visible sentence of the email (inbox previews show it): nothing is hidden."""
    words = words or Catalogue(environment(None), "en")
    n = len(issue.matches) if total is None else total
    if not issue.matches:
        return words.count("preheader_updates", len(issue.updates)) if issue.updates else words("preheader_none")
    first = " ".join(readable(issue.matches[0].entry.title).split())
    kind = "preheader_trending" if issue.subscriber.trending_only else "preheader"
    if n == 1:
        return words(f"{kind}_one", first=first)
    if n == 2:
        return words(f"{kind}_two", first=first)
    return words(f"{kind}_many", n=n, first=first, rest=n - 1)


def profile_summary(issue: Issue, words: Catalogue) -> dict[str, Any]:
    s = issue.subscriber
    keywords = ", ".join(s.keywords) if s.keywords else words("trending_profile")
    excluding = f"; {words('excluding')} {', '.join(s.exclude)}" if s.exclude else ""
    limits = words.count("limits", s.max_entries, schedule=f'"{s.schedule}"', timezone=s.timezone)
    return {"keywords": list(s.keywords), "exclude": list(s.exclude), "schedule": s.schedule,
            "timezone": s.timezone, "max_entries": s.max_entries, "limits": limits,
            "text": wrap(f"{words('your_profile')} {keywords}{excluding}.", indent="") + "\n"
            + wrap(limits, indent="")}


class SlotRenderer:
    """Renders many issues of one slot: each card (paper x highlight variant) is built once, the
    MJML frame is compiled once per shape, and each subscriber's HTML and text are assembled from
    those pieces; with the default theme, each shape of issue is rendered by Jinja once (a `Plan`)
    and later subscribers' values are put into its pieces. Reuse one per batch; `render` gives what
    `rendering.render` gives, byte for byte."""

    def __init__(self, settings: Settings, env: jinja2.Environment | None = None) -> None:
        self.settings = settings
        self.env = env or environment(settings.templates)
        self.words = Catalogue(self.env, settings.language)
        self._queries: dict[str, Query] = {}
        self._maker = CardMaker(self.words, self._queries, rating=bool(settings.base_url))
        self._cards: dict[tuple[Any, ...], Card] = {}
        self._odd_cards: set[int] = set()  # ids of cards whose data carries placeholder text
        # by id(card), with rating links or without: cards live as long as the renderer; a card with
        # rating links is several pieces, the issue's rating prefix going between them
        self._holed_cards: tuple[dict[int, _CardPieces], dict[int, _CardPieces]] = ({}, {})
        self._frames: dict[str, Frame | None] = {}
        self._planned = _default_theme(self.env)
        self._plans: dict[Any, Plan | int] = {}  # shape -> its plan, or 0 (it cannot have one); absent: not tried
        self._interned = Interned()
        self._heads: dict[tuple[Any, ...], tuple[str, str, str, str]] = {}
        self._profiles: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._updates: dict[tuple[Any, ...], Card] = {}

    def trim(self, parts_kept: int = 0) -> None:
        """Forget the cards (memory stays bounded), but keep the frames, plans and subjects: there are
        at most PLANS_KEPT and HEADS_KEPT, and a plan costs three Jinja renderings to learn again. The
        parts cards are made of (each paper's marked fields, the "why" lines) stay too while there are
        at most `parts_kept` of them: a card is made again from its parts in a few microseconds, its
        parts cost ten times that."""
        if self._maker.parts > parts_kept:
            self._maker = CardMaker(self.words, self._queries, rating=bool(self.settings.base_url))
        for kept in (self._cards, self._odd_cards, *self._holed_cards, self._updates):
            kept.clear()

    @property
    def card_count(self) -> int:
        """How many cards are kept (the builder starts afresh past a limit: memory stays bounded)."""
        return len(self._cards)

    def card(self, match: Match, section: str = "") -> Card:
        # a card depends on which terms matched in which fields, not on the queries they came from
        hits = match.hits
        key: tuple[Any, ...]
        if match.why or section:  # a trending paper: its reason ("#2 today") and its section's heading
            key = (match.entry.id, (), match.why, section)
        elif len(hits) == 1:
            key = (match.entry.id, (hits[0].pair,))
        else:
            key = (match.entry.id, tuple(dict.fromkeys([h.pair for h in hits])))
        found = self._cards.get(key)
        if found is None:
            found = self._cards[key] = self._maker.card(match, section, key[1] if len(key) == 2 else None)
            self._check_odd(found)
        return found

    def update_card(self, update: Update, first: bool) -> Card:
        e = update.entry
        key = (e.id, e.title, e.links, update.detail, first)
        found = self._updates.get(key)
        if found is None:  # kept: cards are known by id() while the renderer lives
            found = self._updates[key] = self._maker.update_card(update, first)
            self._check_odd(found)
        return found

    def _check_odd(self, card: Card) -> None:
        if card.odd:
            self._odd_cards.add(id(card))

    def cards(self, issue: Issue) -> list[Card]:
        """The papers that matched, then the "Trending" section, then the "Updates" section."""
        cards = [self.card(m) for m in issue.matches]
        cards.extend(self.card(m, "" if i else "trending") for i, m in enumerate(issue.trending))
        cards.extend(self.update_card(u, not i) for i, u in enumerate(issue.updates))
        return cards

    def render(self, issue: Issue, *, unsubscribe_url: str, change_url: str, view_url: str = "", rate_url: str = "",
               budget: int | None = None, total: int | None = None) -> RenderedIssue:
        """One issue. With `budget` (bytes of HTML), the papers that do not fit are left out, last
        first, and a line says how many (linking the web archive when base_url is set). `view_url`:
        the issue on the web; `rate_url`: the prefix of its "more / less like this" links; `total`: how
        many papers matched when `issue` holds only the first of them."""
        links = _Personal(unsubscribe_url, change_url, view_url, rate_url)
        total = len(issue.matches) if total is None else total
        full = self._render(issue, links, total=total)
        if budget is None or _size(full) <= budget:
            return full
        lo, hi, best = 0, len(issue.matches) - 1, None
        while lo <= hi:  # the most papers that fit
            mid = (lo + hi) // 2
            attempt = self._render(replace(issue, matches=issue.matches[:mid]), links, total=total)
            if _size(attempt) <= budget:
                best, lo = attempt, mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise RenderError(f"the email does not fit in {budget} bytes of HTML even without papers: "
                              "raise the budget or shorten the template")
        return best

    def context(self, issue: Issue, *, unsubscribe_url: str, change_url: str, view_url: str = "", rate_url: str = "",
                total: int | None = None) -> dict[str, Any]:
        """What the templates see for `issue` (its cards in `papers`, without their placeholders)."""
        cards = self.cards(issue)
        context = self._context(issue, cards, _Personal(unsubscribe_url, change_url, view_url, rate_url),
                                len(issue.matches) if total is None else total)
        return {**context, "papers": [c.fields for c in cards]}

    def _head(self, issue: Issue, total: int) -> tuple[str, str, str, str]:
        """Subject, preheader, the preheader wrapped for the text part, and the local date."""
        sub = issue.subscriber
        first = issue.matches[0].entry.title if issue.matches else None
        key = (issue.slot, sub.timezone, len(issue.matches), total, first, sub.trending_only, len(issue.updates))
        found = self._heads.get(key)
        if found is None:
            if len(self._heads) >= HEADS_KEPT:
                self._heads.clear()
            words = self.words
            pre = preheader(issue, words, total)
            found = self._heads[key] = (subject_line(self.settings, issue, words, total), pre,
                                        wrap(pre, indent=""),
                                        words.day(issue.slot.astimezone(ZoneInfo(sub.timezone))))
        return found

    def _profile(self, issue: Issue) -> dict[str, Any]:
        s = issue.subscriber
        key = (s.keywords, s.exclude, s.schedule, s.timezone, s.max_entries)
        found = self._profiles.get(key)
        if found is None:
            if len(self._profiles) >= 10_000:
                self._profiles.clear()
            found = self._profiles[key] = profile_summary(issue, self.words)
        return {**found, "keywords": list(s.keywords), "exclude": list(s.exclude)}

    def _context(self, issue: Issue, cards: list[Card], links: _Personal, total: int) -> dict[str, Any]:
        words = self.words
        dropped = total - len(issue.matches)
        subject, pre, pre_text, day = self._head(issue, total)
        more = None
        if dropped:
            base = self.settings.base_url
            more = {"count": dropped, "url": f"{base}/issues/{issue.id}" if base else None,
                    "label": words.count("more_web" if base else "more_local", dropped)}
        return {
            "newsletter": {"title": self.settings.title, "language": self.settings.language},
            "subscriber": {"email": issue.subscriber.email, "name": issue.subscriber.name},
            "issue": {"id": issue.id, "date": day, "count": len(issue.matches), "first": issue.first},
            "subject": subject,
            "preheader": pre,
            "preheader_text": pre_text,
            "papers": cards,  # what the templates see is each card's fields: see `context`
            "more": more,
            "profile": self._profile(issue),
            "unsubscribe_url": links.unsubscribe,
            "change_url": links.change,
            "view_url": links.view,
            "rate_url": links.rate,
            # near misses (nearmiss.py): three lists, so that every value stays a string for the plans
            "near_titles": [" ".join(readable(n.entry.title).split()) for n in issue.near],
            "near_urls": [paper_links(Match(n.entry, 0.0, ()), words)[0] for n in issue.near],
            "near_clauses": [n.clause for n in issue.near],
            "near_lines": [wrap(f"{' '.join(readable(n.entry.title).split())} ({n.clause})", first=" - ")
                           + f"\n   {paper_links(Match(n.entry, 0.0, ()), words)[0]}" for n in issue.near],
            "t": words,
        }

    def _render(self, issue: Issue, links: _Personal, total: int) -> RenderedIssue:
        cards = self.cards(issue)
        context = self._context(issue, cards, links, total)
        if not self._planned:
            return self._render_jinja(issue, cards, context, total)
        key, values = shape(context)
        plan = self._plans.get(key)
        if isinstance(plan, Plan) and not self._odd(values, cards):
            html_pieces, text_pieces = plan.fill(values, *self._holed(cards, links.rate), self._interned)
            return RenderedIssue(issue=issue, subject=context["subject"], preheader=context["preheader"],
                                 html_pieces=html_pieces, text_pieces=text_pieces,
                                 dropped=total - len(issue.matches))
        result = self._render_jinja(issue, cards, context, total)
        if plan is None and type(result.html_pieces) is Pieces and not self._odd(values, cards):
            # the shape's plan, checked against this rendering (an issue with odd data, which takes
            # the direct path, decides nothing: the next issue of the shape tries)
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            self._plans[key] = self._make_plan(context, values, cards, result) or 0
        return result

    def _odd(self, values: list[str], cards: list[Card]) -> bool:
        """Data that carries placeholder text: the direct path handles it."""
        odd = self._odd_cards
        return any(OPEN in v for v in values) or (bool(odd) and any(id(c) in odd for c in cards))

    def _make_plan(self, context: dict[str, Any], values: list[str], cards: list[Card],
                   reference: RenderedIssue) -> Plan | None:
        """This shape's plan, checked against `reference` (this issue rendered by Jinja)."""
        sentinel_context, paths = sentinels(context)
        try:
            html_source = _render_template(self.env, "issue.mjml.j2", sentinel_context)
            text_source = _render_template(self.env, "issue.txt.j2", sentinel_context)
        except (RenderError, TypeError, ValueError):  # the template computes with a value
            return None
        plan = Plan.make(html_source, text_source, len(cards), paths, self._frame_of, self._interned)
        if plan is None:
            return None
        html, text = plan.fill(values, *self._holed(cards, context["rate_url"]), self._interned)
        for mine, theirs in ((html, reference.html_pieces), (text, reference.text_pieces)):
            if "".join(mine) != "".join(theirs) or mine.wire != getattr(theirs, "wire", None):
                return None
        return plan

    def _render_jinja(self, issue: Issue, cards: list[Card], context: dict[str, Any], total: int) -> RenderedIssue:
        """The issue through Jinja (its frame compiled once per shape), the reference for plans."""
        html_tokens, text_tokens = self._card_pieces(cards, context["rate_url"])
        placed = {**context, "papers": [{**c.fields, "card_html": Markup(token(k)), "card_text": token(k)}
                                        for k, c in enumerate(cards)]}
        source = _render_template(self.env, "issue.mjml.j2", placed)
        text_source = _render_template(self.env, "issue.txt.j2", placed)
        html_pieces = self._assemble_html(source, html_tokens, placed)
        text_pieces = fill(text_source, text_tokens) if split_tokens(text_source, len(cards)) else None
        subject, pre, dropped = context["subject"], context["preheader"], total - len(issue.matches)
        if html_pieces is None or text_pieces is None:  # data carried a placeholder character
            html, text = compile_whole(self.env, context, cards)
            return RenderedIssue(issue=issue, subject=subject, preheader=pre, html_pieces=(html,), text_pieces=(text,),
                                 dropped=dropped)
        return RenderedIssue(issue=issue, subject=subject, preheader=pre, html_pieces=joined(html_pieces),
                             text_pieces=joined(text_pieces), dropped=dropped)

    def _card_pieces(self, cards: list[Card], rate: str) -> tuple[list[SharedText], list[SharedText]]:
        """Each card's HTML and numbered text as one piece, its rating links made with `rate`."""
        html, text, prefix = self._holed(cards, rate)
        return [h.fill(prefix) for h in html], [t.fill(prefix) for t in text]

    def _holed(self, cards: list[Card], rate: str) -> tuple[list[Holed], list[Holed], SharedText | None]:
        """Each card's HTML and numbered text as shared pieces cut where the rating prefix goes, and
        the prefix (`rate`: the issue's, encoded once for all the cards of the message)."""
        prefix = SharedText(rate) if rate else None
        rated = prefix is not None
        kept, intern = self._holed_cards[rated], self._interned
        html, text = [], []
        for number, card in enumerate(cards, start=1):
            found = kept.get(id(card))
            if found is None:
                found = kept[id(card)] = _CardPieces(_holed(card.html_parts, card.rate_html if rated else (), intern))
            html.append(found.html)
            numbered = found.text.get(number)
            if numbered is None:
                numbered = found.text[number] = _holed((f"{card.lead}{number}. ", *card.text_parts),
                                                       card.rate_text if rated else (), intern)
            text.append(numbered)
        return html, text, prefix

    def _frame_of(self, skeleton: str, blocks: int) -> Frame | None:
        if skeleton not in self._frames:
            self._frames[skeleton] = frame(_compile(skeleton), blocks)
        return self._frames[skeleton]

    def _assemble_html(self, source: str, cards: Sequence[str], context: dict[str, Any]) -> list[str] | None:
        if split_tokens(source, len(cards)) is None:
            return None
        hollowed = hollow(source)
        if hollowed is None:  # a card outside a text block: no shortcut
            return None
        fr = self._frame_of(hollowed[0], len(hollowed[1]))
        if fr is None:
            return None  # MJML did something unexpected with a block: no shortcut for this template
        return assemble(fr, hollowed[1], cards)


@dataclass(frozen=True)
class _Personal:
    """The links of one subscriber's issue."""

    unsubscribe: str
    change: str
    view: str
    rate: str


class _CardPieces:
    """One card as shared pieces: its HTML, and its text under each number it has had."""

    __slots__ = ("html", "text")

    def __init__(self, html: Holed) -> None:
        self.html = html
        self.text: dict[int, Holed] = {}


def _holed(parts: tuple[str, ...], rate: tuple[str, ...], intern: Interned) -> Holed:
    """A card as shared pieces (each encoded once, whichever cards share it): its parts and the
    start of its rating links, then the rest of its rating links, cut where the issue's prefix goes."""
    return Holed([intern(p) for p in (*parts, *rate[:1])], [intern(p) for p in rate[1:]])


def _size(rendered: RenderedIssue) -> int:
    """Bytes of the HTML in UTF-8."""
    size = getattr(rendered.html_pieces, "size", None)
    if size is not None:
        return int(size)
    html = rendered.html
    return len(html) if html.isascii() else len(html.encode("utf-8"))


def _default_theme(env: jinja2.Environment) -> bool:
    """Whether both issue templates are the default theme's (plans are made only for those)."""
    if env.loader is None:
        return False
    home = default_templates().resolve()
    try:
        files = [env.loader.get_source(env, name)[1] for name in ("issue.mjml.j2", "issue.txt.j2")]
    except jinja2.TemplateNotFound:
        return False
    return all(f is not None and Path(f).resolve().parent == home for f in files)


def compile_whole(env: jinja2.Environment, context: dict[str, Any], cards: Sequence[Card]) -> tuple[str, str]:
    """HTML and text rendered the direct way: the whole document through Jinja and MJML at once
    (the reference the assembled output is tested against, and the path for odd data)."""
    rate = context.get("rate_url", "")
    whole = {**context, "papers": [{**c.fields, "card_html": Markup(c.rated_html(rate)), "card_text": c.rated_text(i, rate)}
                                   for i, c in enumerate(cards, start=1)]}
    return (_compile(_render_template(env, "issue.mjml.j2", whole)),
            _render_template(env, "issue.txt.j2", whole))


def _compile(source: str) -> str:
    try:
        return mjml.mjml2html(source)
    except ValueError as exc:  # mjml-python reports MJML errors as ValueError; wrap at this edge
        raise RenderError(f"issue.mjml.j2: MJML did not compile: {exc}") from exc


def render(issue: Issue, settings: Settings, *, unsubscribe_url: str, change_url: str, view_url: str = "",
           rate_url: str = "", env: jinja2.Environment | None = None, cache: dict[Any, Any] | None = None,
           budget: int | None = None) -> RenderedIssue:
    """Render one issue. `cache` (one dict per batch) keeps a SlotRenderer so that subscribers of
    the batch share cards and frames; `budget` caps the HTML size (see `fit`)."""
    renderer = _renderer(settings, env, cache)
    return renderer.render(issue, unsubscribe_url=unsubscribe_url, change_url=change_url, view_url=view_url,
                           rate_url=rate_url, budget=budget)


def fit(issue: Issue, settings: Settings, *, unsubscribe_url: str, change_url: str, view_url: str = "",
        rate_url: str = "", env: jinja2.Environment | None = None, cache: dict[Any, Any] | None = None,
        budget: int = HTML_BUDGET) -> RenderedIssue:
    """The issue rendered within `budget` bytes of HTML (Gmail clips above ~102 KB, hiding the
    footer and its unsubscribe link). Papers that do not fit are dropped from the end; the result's
    `dropped` says how many and its issue holds only the papers shown."""
    return render(issue, settings, unsubscribe_url=unsubscribe_url, change_url=change_url, view_url=view_url,
                  rate_url=rate_url, env=env, cache=cache, budget=budget)


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
