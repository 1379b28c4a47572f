"""Source parsers on the captured data, format detection, canonical ids and merging in the store."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from conftest import DATA, LISTING
from newsletter import sources
from newsletter.entries import arxiv_id, title_id
from newsletter.errors import SourceError
from newsletter.sources import entryfile, hf_daily, listing
from newsletter.store import Store

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


def test_listing_gives_every_paper_with_metadata() -> None:
    entries = listing.parse(LISTING.read_bytes(), source="l", today=TODAY)
    assert len(entries) == 49
    assert len({e.id for e in entries}) == 49
    first = entries[0]
    assert first.title.startswith("How AI Ideas Affect the Creativity")
    assert first.author_count == 5 and first.published == date(2024, 1, 24) and first.upvotes is None
    # "Oct 28 1": no year (resolved against the page date Dec 29 -> 2025), one upvote
    causal = next(e for e in entries if e.title.startswith("An Analysis of Causal Effect"))
    assert causal.published == date(2025, 10, 28) and causal.upvotes == 1
    # "Sep 29, 2024 2"
    skill = next(e for e in entries if e.title.startswith("Can Models Learn Skill"))
    assert skill.published == date(2024, 9, 29) and skill.upvotes == 2
    # three papers have no metadata lines: the next title follows the abstract
    bare = [e for e in entries if e.author_count is None]
    assert [e.title[:30] for e in bare] == [
        "Chinese vs. World Bank Develop", "Encoding Multi-level Dynamics ", "Integrating Earth Observation ",
    ]
    assert all(len(e.abstract) > 1000 and "\n" not in e.abstract for e in bare)
    assert entries[-1].title == "Contributions to Robust and Efficient Methods for Analysis of High Dimensional Data"
    assert entries[-1].published == date(2025, 9, 9)


def test_listing_keeps_multi_paragraph_abstracts() -> None:
    page = (
        "Dec 29\n\nA Title About Things\n\nFirst paragraph of the abstract, long enough to be one.\n\n"
        "Second paragraph continues the abstract and ends here.\n\n  • 3 authors\n·\nMar 2 4\n\n"
        "Next Paper Title\n\nIts abstract is here and is longer than its title.\n"
    )
    a, b = listing.parse(page.encode(), source="l", today=TODAY)
    assert a.abstract == ("First paragraph of the abstract, long enough to be one.\n\n"
                          "Second paragraph continues the abstract and ends here.")
    assert (a.author_count, a.published, a.upvotes) == (3, date(2025, 3, 2), 4)
    assert b.title == "Next Paper Title" and b.author_count is None


def test_hf_daily_samples() -> None:
    for path in sorted(DATA.glob("hf_daily_papers_*.json")):
        entries = hf_daily.parse(path.read_bytes(), source="hf")
        assert entries and all(arxiv_id(e.id) == e.id for e in entries)
    (first, *_) = hf_daily.parse((DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes(), source="hf")
    assert first.id == "2607.23193"
    assert first.authors[:2] == ("Jinsen Su", "Yongdong Luo") and first.author_count == 6
    assert first.upvotes == 3 and first.comments == 2 and first.published == date(2026, 7, 28)
    assert first.links.code == "https://github.com/MAC-AutoML/OmniScope"
    assert first.links.arxiv == "https://arxiv.org/abs/2607.23193"


def test_hf_daily_tolerates_missing_optional_fields() -> None:
    data = b'[{"paper": {"id": "2401.01234v2", "title": "T\\n  wrapped", "summary": "S", "authors": []}}]'
    (e,) = hf_daily.parse(data, source="hf")
    assert (e.id, e.title, e.upvotes, e.author_count) == ("2401.01234", "T wrapped", None, None)
    with pytest.raises(SourceError, match="source 'hf': not JSON"):
        hf_daily.parse(b"<html>", source="hf")


def test_feeds_arxiv_rss_and_api_error_entry() -> None:
    rss = (DATA / "arxiv_rss_cs.CL_2026-04-27_3items.xml").read_bytes()
    entries = sources.parse(sources.detect(rss), rss, source="a", today=TODAY)
    assert [e.id for e in entries] == ["2604.22002", "2604.22027", "2604.22038"]
    assert entries[0].abstract.startswith("Social media platforms")
    assert entries[0].authors[:2] == ("Anamta Khan", "Ratna Kandala")
    err = (DATA / "arxiv_api_idlist_abc_HTTP400_error_entry_2026-04-12.xml").read_bytes()
    assert sources.parse("arxiv", err, source="a", today=TODAY) == []
    old = (DATA / "arxiv_api_idlist_astro-ph_0601001_oldstyle_id_2026-04-12.xml").read_bytes()
    assert [e.id for e in sources.parse("arxiv", old, source="a", today=TODAY)] == ["astro-ph/0601001"]


def test_detect_formats() -> None:
    assert sources.detect(LISTING.read_bytes()) == "hf-listing"
    assert sources.detect((DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes()) == "hf-daily"
    assert sources.detect(b'[{"id": "x", "title": "t"}]') == "file"
    assert sources.detect(b'{"id": "x", "title": "t"}\n') == "file"
    assert sources.detect((DATA / "arxiv_rss_cs.CL_2026-04-27_3items.xml").read_bytes()) == "arxiv"


def test_entry_file_errors_name_the_line() -> None:
    with pytest.raises(SourceError, match="source 'f': line 2: invalid JSON"):
        entryfile.parse(b'{"title": "a"}\n{"title": \n', source="f")
    with pytest.raises(SourceError, match="^source 'f': no usable item: entry 1: needs a 'title' string$"):
        entryfile.parse(b'[{"abstract": "no title"}]', source="f")


def test_canonical_ids() -> None:
    assert arxiv_id("https://arxiv.org/abs/2401.01234v3") == "2401.01234"
    assert arxiv_id("oai:arXiv.org:astro-ph/0601001v1") == "astro-ph/0601001"
    assert arxiv_id("no id here 12345") is None
    assert title_id("Large  Language Models!") == title_id("large language models")


def test_same_paper_from_two_sources_is_one_entry(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        titled = entryfile.parse(b'[{"title": "Quantum Widgets", "abstract": "short", "upvotes": 1}]', source="a")
        assert store.upsert_entries(titled, NOW) == {"new": 1, "updated": 0, "unchanged": 0}
        with_id = entryfile.parse(b'[{"id": "2401.01234v2", "title": "Quantum  widgets", '
                                  b'"abstract": "a longer abstract", "upvotes": 5}]', source="b")
        assert store.upsert_entries(with_id, NOW) == {"new": 0, "updated": 1, "unchanged": 0}
        (entry,) = store.entries()
        assert entry.id == "2401.01234" and entry.upvotes == 5 and entry.sources == ("a", "b")
        assert entry.abstract == "a longer abstract" and entry.first_seen == NOW
        # a new arXiv version is the same entry, and not new again
        v3 = entryfile.parse(b'[{"id": "2401.01234v3", "title": "Quantum Widgets", "upvotes": 5}]', source="b")
        assert store.upsert_entries(v3, NOW)["new"] == 0


def test_unsafe_links_are_dropped() -> None:
    (e,) = entryfile.parse(b'[{"title": "t", "links": {"page": "javascript:alert(1)", '
                           b'"pdf": "data:text/html,x", "code": "https://github.com/a/b"}}]', source="f")
    assert e.links.as_dict() == {"code": "https://github.com/a/b"}
