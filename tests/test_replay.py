"""Replay before saving (issue 16): `match --diff OLD NEW` lists exactly the papers gained and lost
(checked against running both queries), per subscriber holding OLD with the issues they would have
gone into; `subscribers set … --dry-run` changes nothing; every keyword edit prints the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = '"language model"', "LLM OR reasoning"


@pytest.fixture
def sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The bundled example (subscribers.example.yaml and its sample data), ingested."""
    project = tmp_path / "subscribers.yaml"
    shutil.copy(ROOT / "subscribers.example.yaml", project)
    shutil.copytree(ROOT / "data", tmp_path / "data")
    assert run("--file", str(project), "ingest") == 0
    capsys.readouterr()
    return project


def _ids(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> set[str]:
    capsys.readouterr()
    assert run("--file", str(project), *args, "--json") == 0
    return {row["id"] for row in json.loads(capsys.readouterr().out)}


def test_match_diff_lists_exactly_what_each_query_alone_selects(sample: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    old = _ids(sample, capsys, "match", OLD, "--limit", "1000")
    new = _ids(sample, capsys, "match", NEW, "--limit", "1000")
    assert old and new and old != new
    assert run("--file", str(sample), "match", "--diff", OLD, NEW, "--json") == 0
    queries, *subscribers = json.loads(capsys.readouterr().out)
    assert queries["subscriber"] is None
    assert {m["id"] for m in queries["added"]} == new - old
    assert {m["id"] for m in queries["removed"]} == old - new
    assert run("--file", str(sample), "match", "--diff", OLD, NEW) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"+{len(new - old)} papers, \u2212{len(old - new)} over the ")
    for paper in new - old:
        assert f"  + {paper}  " in text


def test_match_diff_replays_each_subscriber_that_holds_the_query(sample: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--file", str(sample), "send", "--outbox", str(tmp_path / "out"), "--no-fetch") == 0
    capsys.readouterr()
    assert run("--file", str(sample), "match", "--subscriber", "ada@example.org", "--json", "--limit", "1000") == 0
    ada = json.loads(capsys.readouterr().out)
    keyword = next(r["query"] for row in ada for r in row["reasons"])  # one of ada's own queries
    assert run("--file", str(sample), "match", "--diff", keyword, "title:nothing-matches-this", "--json") == 0
    _, *replays = json.loads(capsys.readouterr().out)
    (mine,) = [r for r in replays if r["subscriber"] == "ada@example.org"]
    assert mine["added"] == [] and mine["removed"]
    assert all(m["issue"] for m in mine["removed"])  # each lost paper names the issue it went into


def test_set_dry_run_changes_nothing_and_an_edit_prints_the_summary(sample: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = sample.read_bytes()
    assert run("--file", str(sample), "subscribers", "set", "ada@example.org", "--add-keyword", "reasoning",
               "--dry-run") == 0
    dry = capsys.readouterr().out
    assert dry.startswith("ada@example.org: +") and "(dry run: nothing was changed)" in dry
    assert sample.read_bytes() == before
    assert run("--file", str(sample), "subscribers", "set", "ada@example.org", "--add-keyword", "reasoning") == 0
    done = capsys.readouterr().out
    assert dry.splitlines()[0] in done.splitlines() and sample.read_bytes() != before
    assert "reasoning" in sample.read_text()
