"""`newsletter match` on the ingested Daily Papers listing, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LISTING, run


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite3"
    assert run("--state", str(path), "ingest", str(LISTING)) == 0
    return path


def test_match_json_lists_the_right_papers_with_reasons(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run("--state", str(state), "match", '"language model" AND NOT survey', "--json", "--limit", "50") == 0
    results = json.loads(capsys.readouterr().out)
    titles = [r["title"] for r in results]
    # every paper whose title or abstract has the phrase (any inflection), none mentioning "survey"
    from newsletter.sources.listing import parse
    from datetime import date
    from newsletter.text import terms

    def has_phrase(text: str) -> bool:
        t = terms(text)
        return any(a == "languag" and b == "model" for a, b in zip(t, t[1:]))

    expected = {e.title for e in parse(LISTING.read_bytes(), source="l", today=date(2026, 11, 27))
                if (has_phrase(e.title) or has_phrase(e.abstract)) and "survey" not in terms(e.title + " " + e.abstract)}
    assert set(titles) == expected and len(expected) >= 8
    assert all(r["reasons"] and r["reasons"][0]["term"] == '"language model"' for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    first = results[0]
    assert {"title"} <= {x["field"] for x in first["reasons"]}  # title hits rank first
    assert set(first) >= {"id", "title", "score", "reasons"}


def test_match_table_and_subscriber_profile(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run("--state", str(state), "match", "title:diffusion") == 0
    out = capsys.readouterr().out
    assert "MagicMix" in out and "ClassDiffusion" not in out  # whole words: ClassDiffusion is one word
    assert "title:diffusion (title)" in out
    cfg = tmp_path / "subscribers.yaml"
    cfg.write_text('newsletter:\n  sender: "D <d@example.org>"\nsubscribers:\n'
                   "  - email: ada@example.org\n    keywords: ['\"data mixture\" OR \"data mixing\"']\n")
    assert run("--file", str(cfg), "--state", str(state), "match", "--subscriber", "ADA@example.org", "--json") == 0
    titles = [r["title"] for r in json.loads(capsys.readouterr().out)]
    assert titles[0].startswith("RegMix") and any(t.startswith("Aioli") for t in titles)


def test_match_bad_query_is_a_clear_error(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--state", str(state), "match", '"unclosed') == 2
    assert "error: query: unclosed quote at column 1" in capsys.readouterr().err


def test_match_since_limits_to_recent_entries(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run("--state", str(state), "match", "model", "--json", "--since", "2000-01-01T00:00Z") == 0
    assert len(json.loads(capsys.readouterr().out)) > 0
    assert run("--state", str(state), "match", "model", "--json", "--since", "2999-01-01T00:00Z") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_match_a_store_held_subscribers_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_config

    project = write_config(tmp_path)
    assert run("--file", str(project), "ingest") == 0
    assert run("--file", str(project), "subscribers", "add", "--store", "held@example.org",
               "--keyword", "title:diffusion") == 0
    capsys.readouterr()
    assert run("--file", str(project), "match", "--subscriber", "held@example.org", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["reasons"][0]["query"] == "title:diffusion" for r in rows)
