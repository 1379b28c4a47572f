"""Hostile input (issue 15): every corpus file through every format, and what a user sees for each kind.

The corpus in tests/data/hostile/ is written by make_corpus.py there; run_corpus.py runs files through
every `sources.parse_all` format and `ingest_paths` in a child process under an address-space cap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer

from conftest import DATA, LISTING, run, write_config
from newsletter import ingest, sources
from newsletter.config import load
from newsletter.errors import SourceError
from newsletter.sources import fetch
from newsletter.store import Store

HOSTILE = DATA / "hostile"
TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
CAP_MIB = 1024  # RLIMIT_AS of the child: a blow-up is a MemoryError traceback, which fails the test
RSS_LIMIT_MIB = 256  # what the whole corpus may peak at (measured: about 45 MiB)


def corpus() -> list[Path]:
    hostile = [p for p in sorted(HOSTILE.iterdir()) if p.suffix != ".py" and p.name != "SOURCE.txt"]
    real = sorted(DATA.glob("*.xml")) + sorted(DATA.glob("hf_daily_*.json")) + [LISTING]
    return hostile + real


def sources_yaml(*items: dict[str, object]) -> str:
    """The `sources:` setting built from data, indented under `newsletter:`."""
    text = yaml.safe_dump({"sources": list(items)}, sort_keys=False)
    return "".join("  " + line + "\n" for line in text.splitlines())


def test_every_corpus_file_through_every_format_gives_entries_or_a_source_error(tmp_path: Path) -> None:
    files = corpus()
    assert len([f for f in files if f.parent == HOSTILE]) >= 41
    runner = HOSTILE / "run_corpus.py"
    done = subprocess.run([sys.executable, str(runner), str(CAP_MIB), *map(str, files)],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert done.returncode == 0, done.stderr[-3000:]  # a traceback: something other than SourceError
    lines = done.stdout.splitlines()
    results: dict[tuple[str, str], dict[str, object]] = {}
    for line in lines[:-1]:
        head, _, tail = line.partition("} ")
        key = json.loads(head + "}")
        results[key["file"], key["format"]] = json.loads(tail)
    assert len(results) == len(files) * (len(sources.FORMATS) + 1)
    maxrss_mib = json.loads(lines[-1])["maxrss_kib"] / 1024
    assert maxrss_mib < RSS_LIMIT_MIB

    # a few outcomes a user relies on
    bomb = results["yaml_alias_bomb_large.yaml", "file"]["error"]
    assert bomb == ("source 'yaml_alias_bomb_large.yaml': invalid YAML at line 2, column 8: "
                    "aliases (*name) are not allowed in entry files; write each value out")
    assert results["deep_array.json", "file"]["error"] == "source 'deep_array.json': JSON nested too deeply to read"
    assert results["same_titles_feed.xml", "feed"]["entries"] == 5
    assert results["huge_upvotes.json", "ingest_paths"] == {"error": None, "new": 1, "skipped": 1}
    for kind in ("feed", "arxiv"):
        assert results["utf16le_bom_feed.xml", kind]["entries"] == 1
        assert results["utf32_bom_feed.xml", kind]["entries"] == 1
    for real in ("arxiv_rss_cs.CL_2026-04-27_3items.xml", "hepml-digest_atom_2026-08-22_first10.atom.xml"):
        assert results[real, "ingest_paths"]["new"] > 0 and not results[real, "ingest_paths"]["error"]


def test_external_entities_are_not_read() -> None:
    for name in ("xxe_file.xml", "xxe_parameter.xml", "billion_laughs.xml"):
        entries = sources.parse("feed", (HOSTILE / name).read_bytes(), source="x", today=TODAY)
        text = " ".join(e.title + e.abstract for e in entries)
        assert "root:" not in text and "lollollol" not in text


# --- item 2: a bad item is skipped and reported; the rest goes on -----------------------------------

def test_absurd_items_from_a_remote_source_are_skipped_and_named(httpserver: HTTPServer, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    daily = json.loads((DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes())
    daily[1]["paper"]["upvotes"] = 10**20
    daily[2]["paper"]["authors"] = 5
    httpserver.expect_request("/daily").respond_with_json(daily)
    httpserver.expect_request("/deep").respond_with_data(b"[" * 100_000 + b"]" * 100_000)
    project = write_config(tmp_path, sources=sources_yaml(
        {"name": "hf", "type": "hf-daily", "url": httpserver.url_for("/daily")},
        {"name": "deep", "type": "hf-daily", "url": httpserver.url_for("/deep")},
        {"name": "listing", "type": "hf-listing", "path": str(LISTING)}))
    with Store(tmp_path / "state.sqlite3") as store:
        reports = {r.source: r for r in ingest.ingest_sources(store, load(project, {}), NOW)}
    assert (reports["hf"].new, reports["hf"].error) == (3, None)
    assert reports["hf"].skipped == (
        f"source 'hf': item 2 ('{daily[1]['paper']['title'][:60]}…'): 'upvotes' is 100000000000000000000, "
        "not a whole number from 0 to 9223372036854775807",
        f"source 'hf': item 3 ('{daily[2]['paper']['title'][:60]}…'): 'authors' is not a list",
    )
    assert reports["deep"].error == "source 'deep': JSON nested too deeply to read"
    assert reports["listing"].new == 49
    assert run("--file", str(project), "--state", str(tmp_path / "state.sqlite3"), "status", "--json") == 0
    status = {s["name"]: s["error"] for s in json.loads(capsys.readouterr().out)["sources"]}
    assert status["hf"].startswith("source 'hf': 2 bad items skipped: item 2 (")
    assert status["deep"] == "source 'deep': JSON nested too deeply to read"
    assert status["listing"] is None


def test_values_sqlite_cannot_store_never_leave_the_parser() -> None:
    data = json.dumps([{"title": "Fine", "upvotes": 2**63 - 1}, {"title": "Over", "upvotes": 2**63},
                       {"title": "Below", "comments": -1}, {"title": "Text", "author_count": "12"}]).encode()
    parsed = sources.parse_all("file", data, source="f", today=TODAY)
    assert [(e.title, e.upvotes, e.author_count) for e in parsed.entries] == [("Fine", 2**63 - 1, None),
                                                                            ("Text", None, 12)]
    assert parsed.skipped == (
        "entry 2 ('Over'): 'upvotes' is 9223372036854775808, not a whole number from 0 to 9223372036854775807",
        "entry 3 ('Below'): 'comments' is -1, not a whole number from 0 to 9223372036854775807",
    )


def test_a_source_with_no_usable_item_is_that_sources_error() -> None:
    with pytest.raises(SourceError) as caught:
        sources.parse("hf-daily", b'[{"paper": 5}, {"paper": {"title": ""}}]', source="hf", today=TODAY)
    assert str(caught.value) == ("source 'hf': no usable item: item 1: 'paper' is a number, not an object "
                                 "(and 1 more)")


# --- item 9: hostile local files give `error: source 'X': ...` ------------------------------------

@pytest.mark.parametrize(("name", "fmt", "message"), [
    ("deep_object.json", "file", "JSON nested too deeply to read"),
    ("deep_block.yaml", "file", "invalid YAML at line 1, column 129: nested deeper than 64 levels"),
    ("deep_flow.yaml", "hf-daily", "JSON nested too deeply to read"),
    ("yaml_python_tag.yaml", "file", "invalid YAML at line 1, column 10: could not determine a constructor "
                                     "for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("invalid_utf8.yaml", "file", "not UTF-8 text (invalid byte at offset 12); save the file as UTF-8"),
    ("nul_raw.yaml", "file", "invalid YAML: unacceptable character #x0000: special characters are not "
                             "allowed in \"<unicode string>\", position 12"),
    ("top_level_scalar.json", "file", "expected a list of entry objects"),
    ("yaml_alias_bomb_small.yaml", "file", "invalid YAML at line 2, column 8: aliases (*name) are not "
                                           "allowed in entry files; write each value out"),
])
def test_hostile_local_files_are_that_sources_error(name: str, fmt: str, message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = HOSTILE / name
    assert run("--state", str(tmp_path / "s.sqlite3"), "ingest", "--format", fmt, str(path)) == 1
    err = capsys.readouterr().err
    assert err == f"error: source '{name}': {message}\n"


def test_yaml_alias_bomb_in_a_configured_file_source_is_refused(tmp_path: Path, httpserver: HTTPServer,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # the small bomb (405 bytes, a 34 MB abstract before this fix); the large one, which exhausts
    # memory before the fix, runs in the corpus test's child process under RLIMIT_AS
    bomb = (HOSTILE / "yaml_alias_bomb_small.yaml").read_bytes()
    httpserver.expect_request("/entries.yaml").respond_with_data(bomb)
    project = write_config(tmp_path, sources=sources_yaml(
        {"name": "local", "type": "file", "path": str(HOSTILE / "yaml_alias_bomb_small.yaml")},
        {"name": "remote", "type": "file", "url": httpserver.url_for("/entries.yaml")}))
    assert run("--file", str(project), "ingest") == 1
    err = capsys.readouterr().err.splitlines()
    refusal = "invalid YAML at line 2, column 8: aliases (*name) are not allowed in entry files; write each value out"
    assert err == [f"error: source 'local': {refusal}", f"error: source 'remote': {refusal}"]


# --- item 8: feed items keyed by guid or link; invisible titles refused ----------------------------

def test_feed_items_with_the_same_title_stay_distinct(tmp_path: Path) -> None:
    data = (HOSTILE / "same_titles_feed.xml").read_bytes()
    parsed = sources.parse_all("feed", data, source="blog", today=TODAY)
    assert [e.title for e in parsed.entries] == ["Weekly notes"] * 5
    assert len({e.id for e in parsed.entries}) == 5 and all(e.id.startswith("u:") for e in parsed.entries)
    with Store(tmp_path / "s.sqlite3") as store:
        assert store.upsert_entries(parsed.entries, NOW) == {"new": 5, "updated": 0, "unchanged": 0}
        # seen again: the same five entries, not five more
        assert store.upsert_entries(parsed.entries, NOW) == {"new": 0, "updated": 0, "unchanged": 5}


def test_feed_items_with_empty_or_invisible_titles_are_skipped_and_named() -> None:
    parsed = sources.parse_all("feed", (HOSTILE / "empty_titles_feed.xml").read_bytes(), source="blog",
                               today=TODAY)
    assert [e.title for e in parsed.entries] == ["Real Post"]
    assert parsed.skipped == ("item 2: has no title", "item 3: its title is empty or invisible after cleaning")


def test_an_old_title_id_entry_is_taken_over_by_the_guid_id(tmp_path: Path) -> None:
    from newsletter.entries import make_entry

    with Store(tmp_path / "s.sqlite3") as store:
        # stored before this change: a feed item keyed by its title
        store.upsert_entries([make_entry(title="Weekly notes", source="blog")], NOW)
        parsed = sources.parse_all("feed", (HOSTILE / "same_titles_feed.xml").read_bytes(), source="blog",
                                   today=TODAY)
        assert store.upsert_entries(parsed.entries, NOW) == {"new": 4, "updated": 1, "unchanged": 0}
        assert sorted(e.id for e in store.entries()) == sorted(e.id for e in parsed.entries)


# --- item 10: local paths honour the cap and refuse what is not a regular file --------------------

def test_local_paths_refuse_devices_fifos_and_directories(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SourceError) as caught:
        fetch.read_path(fifo, "p")  # opened non-blocking: returns at once although no one writes
    assert str(caught.value) == f"source 'p': {fifo} is a FIFO (named pipe), not a regular file"
    with pytest.raises(SourceError) as caught:
        fetch.read_path(Path("/dev/zero"), "z")
    assert str(caught.value) == "source 'z': /dev/zero is a character device, not a regular file"
    with pytest.raises(SourceError) as caught:
        fetch.read_path(tmp_path, "d")
    assert str(caught.value) == f"source 'd': {tmp_path} is a directory, not a regular file"


def test_local_paths_honour_max_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(LISTING.read_bytes())
    project = write_config(tmp_path, sources=sources_yaml(
        {"name": "big", "type": "hf-listing", "path": str(big), "max_bytes": 1000}))
    assert run("--file", str(project), "ingest") == 1
    size = big.stat().st_size
    assert capsys.readouterr().err == f"error: source 'big': {big} is {size} bytes, over the 1000-byte cap\n"
    assert fetch.read_path(big, "big") == LISTING.read_bytes()  # under the default 20 MB cap


def test_dev_zero_on_the_command_line_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--state", str(tmp_path / "s.sqlite3"), "ingest", "/dev/zero") == 1
    assert capsys.readouterr().err == "error: source '/dev/zero': /dev/zero is a character device, not a regular file\n"


# --- item 18: invisible characters ------------------------------------------------------------------

def test_soft_hyphens_and_zero_width_spaces_do_not_make_a_second_paper(tmp_path: Path) -> None:
    hidden = sources.parse("file", (HOSTILE / "soft_hyphen_title.json").read_bytes(), source="a", today=TODAY)
    feed = sources.parse("feed", (HOSTILE / "soft_hyphen_feed.xml").read_bytes(), source="b", today=TODAY)
    plain = sources.parse("file", b'[{"title": "Attention Is All You Need"}]', source="c", today=TODAY)
    assert hidden[0].title == feed[0].title == "Attention Is All You Need"
    assert hidden[0].abstract == "Transformers."
    with Store(tmp_path / "s.sqlite3") as store:
        store.upsert_entries(plain, NOW)
        store.upsert_entries(hidden, NOW)
        store.upsert_entries(feed, NOW)
        (entry,) = store.entries()
    assert entry.sources == ("c", "a", "b")


def test_bidi_controls_are_removed_from_titles() -> None:
    (e,) = sources.parse("file", (HOSTILE / "rtl_override_title.json").read_bytes(), source="a", today=TODAY)
    assert e.title == "Need You All Is Attention"


# --- item 19: UTF-16/32 feeds -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["utf16le_bom_feed.xml", "utf16be_feed.xml", "utf32_bom_feed.xml"])
def test_utf16_and_utf32_feeds_are_detected_and_parsed(name: str) -> None:
    data = (HOSTILE / name).read_bytes()
    assert sources.detect(data) == "feed"
    (e,) = sources.parse(sources.detect(data), data, source="u", today=TODAY)
    assert e.title.startswith("UTF-")


def test_utf16_arxiv_feed_is_detected_as_arxiv() -> None:
    rss = (DATA / "arxiv_rss_cs.CL_2026-04-27_3items.xml").read_bytes().decode()
    data = rss.encode("utf-16")
    assert sources.detect(data) == "arxiv"
    assert [e.id for e in sources.parse("arxiv", data, source="a", today=TODAY)] == [
        "2604.22002", "2604.22027", "2604.22038"]
