"""Issue -> subject, preheader, HTML (Jinja2 -> MJML -> mjml-python) and the plain-text part.

Data is escaped by Jinja (autoescape on for *.mjml.j2) before MJML compiles it, so a title such
as `</mj-text><mj-raw><script>` stays text. Highlights are built here from escaped pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup, escape

from newsletter.errors import RenderError
from newsletter.models import Hit, Issue, Match, RenderedIssue, Settings
from newsletter.query import parse
from newsletter.tex import readable
from newsletter.text import stem, word_spans

ABSTRACT_LIMIT = 480
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
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


class Highlighter:
    """Marks the words of a text that the matched query terms hit."""

    def __init__(self, queries: Iterable[str]) -> None:
        self.stems: set[str] = set()
        self.prefixes: set[str] = set()
        for text in queries:
            try:
                q = parse(text)
            except ValueError:
                continue
            for term in q.positive_terms():
                if term.prefix:
                    self.stems.update(term.words[:-1])
                    self.prefixes.add(term.words[-1])
                else:
                    self.stems.update(term.words)

    def _hit(self, word: str) -> bool:
        return stem(word) in self.stems or any(word.startswith(p) for p in self.prefixes)

    def spans(self, text: str) -> list[tuple[int, int]]:
        merged: list[tuple[int, int]] = []
        for start, end, word in word_spans(text):
            if self._hit(word):
                if merged and merged[-1][1] == start:
                    merged[-1] = (merged[-1][0], end)
                elif merged and not text[merged[-1][1]:start].strip(" -‐–—/"):
                    merged[-1] = (merged[-1][0], end)  # adjacent words of a phrase: one highlight
                else:
                    merged.append((start, end))
        return merged

    def html(self, text: str) -> Markup:
        out, pos = [], 0
        for start, end in self.spans(text):
            out.append(escape(text[pos:start]))
            out.append(Markup("<strong class=\"hit\">") + escape(text[start:end]) + Markup("</strong>"))
            pos = end
        out.append(escape(text[pos:]))
        return Markup("").join(out)

    def text(self, text: str) -> str:
        out, pos = [], 0
        for start, end in self.spans(text):
            out.append(text[pos:start] + "*" + text[start:end] + "*")
            pos = end
        return "".join(out) + text[pos:]


def authors_line(match: Match) -> str:
    e = match.entry
    names = list(e.authors)
    count = e.author_count or len(names)
    if not names:
        return f"{count} author{'s' if count != 1 else ''}" if count else ""
    if len(names) <= 4:
        shown = ", ".join(names)
    else:
        shown = f"{', '.join(names[:2])}, … {names[-1]}"
    return f"{shown} ({count} authors)" if count > len(names[:4]) or len(names) > 4 else shown


def _day(d: date | datetime) -> str:
    return f"{d.day} {d:%b %Y}"


def why_line(match: Match) -> str:
    parts: list[str] = []
    by_term: dict[str, list[str]] = {}
    for hit in match.hits:
        by_term.setdefault(hit.term, []).append(hit.field)
    for term, fields in by_term.items():
        parts.append(f"{term} in {' and '.join(dict.fromkeys(fields))}")
    return "Matched " + "; ".join(parts) if parts else "Matched your profile"


def paper_context(match: Match) -> dict[str, Any]:
    e = match.entry
    hl = Highlighter(h.query for h in match.hits)
    title = readable(e.title)
    abstract, cut = trim_abstract(readable(e.abstract))
    meta = [x for x in (authors_line(match), e.organization,
                        _day(e.published) if e.published else None,
                        f"▲ {e.upvotes} upvote{'s' if e.upvotes != 1 else ''}" if e.upvotes is not None else None,
                        f"{e.comments} comment{'s' if e.comments != 1 else ''}" if e.comments else None) if x]
    links = [(label, url) for label, url in (
        ("Paper", e.links.page), ("arXiv", e.links.arxiv), ("PDF", e.links.pdf),
        ("Code", e.links.code), ("Project page", e.links.project)) if url]
    return {
        "id": e.id,
        "title": title,
        "title_html": hl.html(title),
        "title_text": hl.text(title),
        "url": e.url,
        "meta": " · ".join(meta),
        "abstract_html": hl.html(abstract),
        "abstract_text": hl.text(abstract),
        "trimmed": cut,
        "links": links,
        "why": why_line(match),
        "terms": list(match.terms),
        "score": match.score,
    }


def _cached_paper(match: Match, cache: dict[Any, dict[str, Any]] | None) -> dict[str, Any]:
    if cache is None:
        return paper_context(match)
    key = (match.entry.id, match.score, match.hits)
    found = cache.get(key)
    if found is None:
        found = cache[key] = paper_context(match)
    return found


def subject_line(settings: Settings, issue: Issue) -> str:
    local = issue.slot.astimezone(ZoneInfo(issue.subscriber.timezone))
    n = len(issue.matches)
    count = f"{n} new paper{'s' if n != 1 else ''}" if n else "no new papers"
    return header_text(f"{settings.title} · {_day(local)}: {count}")


def preheader(issue: Issue) -> str:
    titles = [readable(m.entry.title) for m in issue.matches[:2]]
    if not titles:
        return "Nothing matched your profile this time."
    more = len(issue.matches) - len(titles)
    text = " · ".join(titles)
    return text + (f" and {more} more" if more > 0 else "")


def profile_summary(issue: Issue) -> dict[str, Any]:
    s = issue.subscriber
    return {"keywords": list(s.keywords), "exclude": list(s.exclude), "schedule": s.schedule,
            "timezone": s.timezone, "max_entries": s.max_entries}


def render(issue: Issue, settings: Settings, *, unsubscribe_url: str, change_url: str,
           env: jinja2.Environment | None = None,
           cache: dict[tuple[str, float, tuple[Hit, ...]], dict[str, Any]] | None = None) -> RenderedIssue:
    """Render one issue. `cache` (one per batch) shares a paper's highlighted text between
    subscribers whose matches explain it the same way."""
    env = env or environment(settings.templates)
    local = issue.slot.astimezone(ZoneInfo(issue.subscriber.timezone))
    subject = subject_line(settings, issue)
    context = {
        "newsletter": {"title": settings.title, "language": settings.language},
        "subscriber": {"email": issue.subscriber.email, "name": issue.subscriber.name},
        "issue": {"id": issue.id, "date": _day(local), "count": len(issue.matches), "first": issue.first},
        "subject": subject,
        "preheader": preheader(issue),
        "papers": [_cached_paper(m, cache) for m in issue.matches],
        "profile": profile_summary(issue),
        "unsubscribe_url": unsubscribe_url,
        "change_url": change_url,
    }
    mjml_source = _render_template(env, "issue.mjml.j2", context)
    text = _render_template(env, "issue.txt.j2", context)
    try:
        html = mjml.mjml2html(mjml_source)
    except ValueError as exc:  # mjml-python reports MJML errors as ValueError; wrap at this edge
        raise RenderError(f"issue.mjml.j2: MJML did not compile: {exc}") from exc
    return RenderedIssue(issue=issue, subject=subject, preheader=str(context["preheader"]), html=html, text=text)


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
