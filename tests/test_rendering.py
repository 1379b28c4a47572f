"""Rendering and the message: hostile text stays text, headers stay single lines, size stays small."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import DATA
from newsletter import message as messagelib
from newsletter.config import loads
from newsletter.matching import EntryIndex, Profile
from newsletter.models import Config, Entry, Issue, Links
from newsletter.rendering import render, trim_abstract

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)
CONFIG = """\
newsletter:
  title: Test Digest
  sender: "Test Digest <digest@example.org>"
  base_url: https://digest.example.org
subscribers:
  - email: ada@example.org
    name: Ada
    keywords: ['paper OR model OR script OR alert OR xss OR title']
    max_entries: 40
"""


def config(text: str = CONFIG) -> Config:
    return loads(text, Path("subscribers.yaml"), {})


def issue_for(entries: list[Entry], cfg: Config | None = None) -> Issue:
    cfg = cfg or config()
    sub = cfg.subscribers[0]
    matches = EntryIndex(entries).select(Profile.from_strings(sub.keywords), limit=sub.max_entries)
    return Issue(id="issue1", subscriber=sub, slot=NOW, built_at=NOW, matches=tuple(matches))


def rendered_message(entries: list[Entry]) -> tuple[str, str, bytes]:
    cfg = config()
    issue = issue_for(entries, cfg)
    links = messagelib.unsubscribe_links(cfg.settings, "ada@example.org", "s3cret")
    r = render(issue, cfg.settings, unsubscribe_url=links.visible, change_url="mailto:digest@example.org")
    msg = messagelib.build(r, cfg.settings, cfg.subscribers[0], links, NOW)
    return r.html, r.text, messagelib.to_bytes(msg)


def hostile_values() -> list[str]:
    xss = json.loads((DATA / "xss_vectors_bleach_regression.json").read_text())["cases"]
    real = json.loads((DATA / "real_edge_cases.json").read_text())["cases"]
    return [c["input"] for c in xss] + [c["value"] if isinstance(c["value"], str) else json.dumps(c["value"])
                                        for c in real] + [
        "</mj-text><mj-raw><script>alert(1)</script></mj-raw><mj-text>",
        "Title with &amp; entity and &lt;b&gt;",
        "Line one\r\nBcc: evil@example.com",
        "=?UTF-8?Q?=0A?=Bcc: x@evil.example",
    ]


def _visible_html(html: str) -> str:
    return re.sub(r"<style.*?</style>", "", html, flags=re.S)


@pytest.mark.parametrize("value", hostile_values())
def test_hostile_titles_and_abstracts_render_as_text(value: str) -> None:
    entry = Entry(id="x", title=f"paper {value}", abstract=f"model {value}",
                  links=Links(page="https://example.org/p"))
    html, text, raw = rendered_message([entry])
    body = _visible_html(html)
    assert "<script" not in body.lower()
    assert not re.search(r"<[^>]+\son\w+\s*=", body, re.I)
    assert "javascript:" not in " ".join(re.findall(r'href="([^"]*)"', body)).lower()
    assert not re.search(r'(?:href|src)="data:', body, re.I)
    assert "<mj-" not in body
    for href in re.findall(r'href="([^"]*)"', body):
        assert href.startswith(("https://", "http://", "mailto:")), href
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Bcc"] is None
    assert [k for k in msg.keys() if k.lower() not in {
        "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
        "list-unsubscribe-post", "auto-submitted", "precedence", "x-newsletter-issue", "mime-version",
        "content-type"}] == []
    for key, header in msg.items():
        assert "\n" not in str(header) and "\r" not in str(header), key


def test_mjml_closing_tag_in_title_is_visible_text() -> None:
    html, text, _ = rendered_message([Entry(id="x", title="paper </mj-text><mj-raw><b>bold</b></mj-raw>")])
    assert "&lt;/mj-text&gt;&lt;mj-raw&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    assert "</mj-text><mj-raw><b>bold</b></mj-raw>" in text


def test_entity_is_decoded_once_and_escaped_once() -> None:
    from newsletter.entries import make_entry

    e = make_entry(title="paper: Widgets &amp; Gadgets", abstract="A &lt;b&gt; tag", source="s")
    html, text, _ = rendered_message([e])
    assert "Widgets &amp; Gadgets" in html and "Widgets & Gadgets" in text
    assert "A &lt;b&gt; tag" in html and "A <b> tag" in text
    assert "&amp;amp;" not in html


def test_twenty_paper_issue_stays_under_gmail_clipping() -> None:
    from newsletter.sources import listing
    from conftest import LISTING

    entries = listing.parse(LISTING.read_bytes(), source="l", today=date(2026, 11, 27))[:20]
    entries = [Entry(**{**e.__dict__, "title": "paper " + e.title,
                        "links": Links(page=f"https://huggingface.co/papers/2401.{i:05d}",
                                       arxiv=f"https://arxiv.org/abs/2401.{i:05d}",
                                       pdf=f"https://arxiv.org/pdf/2401.{i:05d}",
                                       code="https://github.com/example/code")})
               for i, e in enumerate(entries)]
    html, text, _ = rendered_message(entries)
    assert html.count('<h2 class="t"') == 20
    assert len(html.encode()) < 102 * 1024


def test_message_headers() -> None:
    _, _, raw = rendered_message([Entry(id="2401.00001", title="paper one")])
    msg = message_from_bytes(raw, policy=policy.default)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
        assert len(msg.get_all(name)) == 1, name
    assert re.fullmatch(r"<issue1\.[0-9a-f]{12}@example\.org>", msg["Message-ID"])
    # raw, not RFC 2047-encoded: mailbox providers read the URL as it stands
    assert re.search(rb"\r\nList-Unsubscribe: <https://digest\.example\.org/unsubscribe/[\w.-]+>, <mailto:", raw)
    assert msg["To"] == "Ada <ada@example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https = re.search(r"<(https://digest\.example\.org/unsubscribe/[^>]+)>", msg["List-Unsubscribe"])
    assert https
    from newsletter.tokens import verify

    assert verify(https.group(1).rsplit("/", 1)[1], "s3cret") == "ada@example.org"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert https.group(1) in text and https.group(1) in html
    assert 'lang="en"' in html


def test_trim_abstract_at_sentence_boundary() -> None:
    text = "First sentence is here. " * 30
    out, cut = trim_abstract(text, 100)
    assert cut and out.endswith("here.") and len(out) <= 100
    assert trim_abstract("Short one.", 100) == ("Short one.", False)
    long_sentence = "word " * 200
    out, cut = trim_abstract(long_sentence, 100)
    assert cut and out.endswith("…") and len(out) <= 101


def test_tokens_reject_forgery() -> None:
    from newsletter.tokens import sign, verify

    token = sign("ada@example.org", "k")
    assert verify(token, "k") == "ada@example.org"
    assert verify(token, "other") is None
    assert verify(token[:-2], "k") is None
    head, tail = token.split(".")
    forged = sign("eve@example.org", "guess").split(".")[0] + "." + tail
    assert verify(forged, "k") is None
    assert verify("garbage", "k") is None and verify("", "k") is None and verify("a.b.c", "k") is None


def test_template_override_and_error_names_file_and_line(tmp_path: Path) -> None:
    from newsletter.errors import RenderError

    (tmp_path / "issue.txt.j2").write_text("Custom text for {{ subscriber.email }}\n")
    cfg = config(CONFIG.replace("  base_url:", f"  templates: {tmp_path}\n  base_url:"))
    issue = issue_for([Entry(id="x", title="paper")], cfg)
    r = render(issue, cfg.settings, unsubscribe_url="https://u", change_url="mailto:x@example.org")
    assert r.text == "Custom text for ada@example.org\n"
    assert "Test Digest" in r.html  # the HTML still comes from the default theme
    (tmp_path / "issue.txt.j2").write_text("line one\n{{ nope.missing }}\n")
    with pytest.raises(RenderError, match=r"issue\.txt\.j2:2: 'nope' is undefined"):
        render(issue, cfg.settings, unsubscribe_url="https://u", change_url="mailto:x@example.org")


@pytest.mark.parametrize(("source", "shown"), [
    ("$\\omega$Test: WebView-Oriented Testing", "ωTest: WebView-Oriented Testing"),
    ("a subset $S$ of the domain", "a subset S of the domain"),
    ("over $\\{1, \\dots, n\\}$, is it $\\varepsilon_1$-close", "over {1, …, n}, is it ε₁-close"),
    ("runs in $\\mathcal{O}(n\\log n)$ time", "runs in 𝒪(n log n) time"),
    ("$\\tilde{O}(\\varepsilon^{-2})$ samples", "Õ(ε⁻²) samples"),
    ("costs $35,000 per year", "costs $35,000 per year"),
    ("between $5 and $10", "between $5 and $10"),
    ("$\\frac{a}{b}$ is left as source", "$\\frac{a}{b}$ is left as source"),
])
def test_tex_is_shown_readably(source: str, shown: str) -> None:
    from newsletter.tex import readable

    assert readable(source) == shown


def test_tex_title_in_the_email_and_matching_still_works() -> None:
    html, text, _ = rendered_message([Entry(id="x", title="$\\omega$Test: paper on WebView testing")])
    assert "ωTest: <strong" in html or "ωTest:" in html
    assert "ωTest" in text and "$\\omega$" not in text


@pytest.mark.parametrize(("names", "count", "line"), [
    (("Ada Lovelace", "Alan Turing"), 2, "Ada Lovelace, Alan Turing"),
    (tuple(f"Author {i}" for i in range(40)), 40, "Author 0, Author 1, … Author 39 (40 authors)"),
    (("Ada Lovelace",), 5, "Ada Lovelace (5 authors)"),
    ((), 7, "7 authors"),
    ((), 1, "1 author"),
])
def test_author_lines(names: tuple[str, ...], count: int, line: str) -> None:
    from newsletter.models import Match
    from newsletter.rendering import authors_line

    assert authors_line(Match(Entry(id="x", title="t", authors=names, author_count=count), 1.0, ())) == line


def _luminance(hex_color: str) -> float:
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize(("fg", "bg"), [
    ("#1f2937", "#ffffff"), ("#4b5563", "#ffffff"), ("#1d4ed8", "#ffffff"), ("#4b5563", "#f3f4f6"),
    ("#1f2937", "#fef3c7"),                                        # light: text, muted, links, highlight
    ("#f3f4f6", "#1f2937"), ("#d1d5db", "#1f2937"), ("#93c5fd", "#1f2937"), ("#fffbeb", "#78350f"),
    ("#f3f4f6", "#111827"),                                        # dark
])
def test_theme_colours_have_readable_contrast(fg: str, bg: str) -> None:
    from newsletter.rendering import default_templates

    theme = (default_templates() / "issue.mjml.j2").read_text().lower()
    assert fg in theme and bg in theme
    assert _contrast(fg, bg) >= 4.5  # WCAG AA for body text


def test_html_is_accessible_and_dark_mode_aware() -> None:
    html, _, _ = rendered_message([Entry(id="x", title="paper one", links=Links(page="https://example.org/p"))])
    assert '<html lang="en"' in html
    assert '<meta name="color-scheme" content="light dark"' in html
    assert "@media (prefers-color-scheme: dark)" in html
    tables = re.findall(r"<table[^>]*>", html)
    assert tables and all('role="presentation"' in t for t in tables)
    assert not re.search(r"<img(?![^>]*\balt=)", html)  # any image carries an alt text
    assert "fonts.googleapis" not in html and "@import" not in html


# --- issue 10: the text part's wrapping is textwrap's, line for line ----------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from newsletter.wrapping import wrap_lines  # noqa: E402

_WORD = st.text(alphabet=st.sampled_from("ab*()é·\u00a0\u2003-—"), min_size=0, max_size=90)


@settings(max_examples=400, deadline=None)
@given(st.lists(_WORD, max_size=40), st.lists(st.sampled_from([" ", "  ", "\t", "\n", "   "]), max_size=40),
       st.sampled_from([("   ", "   "), ("XXXX", "   "), ("", "")]), st.integers(min_value=4, max_value=80))
def test_fast_wrapping_gives_textwraps_lines(words: list[str], gaps: list[str], indents: tuple[str, str],
                                             width: int) -> None:
    import textwrap

    text = "".join(w + (gaps[i] if i < len(gaps) else " ") for i, w in enumerate(words)).strip(" ")
    first, rest = indents
    assert wrap_lines(text, width, first, rest) == textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False)


@given(st.text(alphabet=st.sampled_from("&<>\"'a é;#\u00a0"), max_size=60) | st.text(max_size=60))
def test_plans_escape_values_as_jinja_does(value: str) -> None:
    """A plan puts each value into the HTML escaped by `plans.html_escape`: exactly what Jinja's
    autoescape (markupsafe) writes for it."""
    from markupsafe import escape

    from newsletter.plans import html_escape

    assert html_escape(value) == str(escape(value))
