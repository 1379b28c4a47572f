"""`newsletter subscribers`: golden files for every edit, refused edits, concurrent editors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run

GOLDEN = Path(__file__).parent / "golden" / "subscribers"
REGEN = os.environ.get("NEWSLETTER_REGEN_GOLDEN") == "1"

EDITS = {
    "add": ["add", "Bob@Example.ORG", "--name", "Bob", "--keyword", "title:transformer*",
            "--keyword", '"graph neural network"', "--timezone", "Asia/Tokyo", "--max-entries", "4"],
    "set_name": ["set", "grace@example.org", "name", "Grace Hopper"],
    "set_keywords": ["set", "ada@example.org", "keywords", "RAG", '"retrieval augmented"'],
    "add_keyword": ["set", "ADA@example.org", "--add-keyword", "distill*"],
    "remove_keyword": ["set", "grace@example.org", "--remove-keyword", "causal*"],
    "add_exclude": ["set", "grace@example.org", "--add-exclude", "survey"],
    "remove": ["remove", "ada@example.org"],
}


@pytest.fixture
def subscribers_file(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.yaml"
    shutil.copy(GOLDEN / "input.yaml", path)
    return path


@pytest.mark.parametrize("name", sorted(EDITS))
def test_each_edit_matches_its_golden_file(name: str, subscribers_file: Path) -> None:
    assert run("--quiet", "--file", str(subscribers_file), "subscribers", *EDITS[name]) == 0
    golden = GOLDEN / f"{name}.yaml"
    if REGEN:
        golden.write_text(subscribers_file.read_text())
    assert subscribers_file.read_text() == golden.read_text()


def _state(path: Path, email: str, capsys: pytest.CaptureFixture[str]) -> str:
    import json

    capsys.readouterr()
    assert run("--file", str(path), "status", "--json") == 0
    return next(s["state"] for s in json.loads(capsys.readouterr().out)["subscribers"] if s["email"] == email)


def test_pause_and_resume_are_state_and_leave_the_file_alone(subscribers_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = subscribers_file.read_bytes()
    assert run("--file", str(subscribers_file), "subscribers", "pause", "grace@example.org") == 0
    assert subscribers_file.read_bytes() == before
    assert _state(subscribers_file, "grace@example.org", capsys) == "paused"
    assert run("--file", str(subscribers_file), "subscribers", "resume", "grace@example.org") == 0
    assert subscribers_file.read_bytes() == before
    assert _state(subscribers_file, "grace@example.org", capsys) == "active"


def test_resume_drops_a_pause_written_in_the_file(subscribers_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from newsletter import subscribers

    subscribers.edit(subscribers_file, subscribers.flag("grace@example.org", "paused", True))  # an editor's pause
    assert "paused: true" in subscribers_file.read_text()
    assert _state(subscribers_file, "grace@example.org", capsys) == "paused"
    assert run("--file", str(subscribers_file), "subscribers", "resume", "grace@example.org") == 0
    assert "paused" not in subscribers_file.read_text()
    assert _state(subscribers_file, "grace@example.org", capsys) == "active"


def test_set_is_one_transaction(subscribers_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """D3: a refused change refuses the whole `set`; the name change is not written either."""
    before = subscribers_file.read_bytes()
    assert run("--file", str(subscribers_file), "subscribers", "set", "ada@example.org", "name", "Ada L",
               "--add-exclude", '"unclosed') == 2
    assert "unclosed quote" in capsys.readouterr().err
    assert subscribers_file.read_bytes() == before
    assert run("--file", str(subscribers_file), "subscribers", "set", "ada@example.org", "name", "Ada L",
               "--add-exclude", "benchmark") == 0
    text = subscribers_file.read_text()
    assert "name: Ada L" in text and "benchmark" in text


@pytest.mark.parametrize(("args", "message"), [
    (["add", "not-an-address", "--keyword", "x"], "email 'not-an-address': An email address must have an @-sign."),
    (["add", "ada@EXAMPLE.org", "--keyword", "x"], "'ada@example.org' is already a subscriber"),
    (["set", "ada@example.org", "schedule", "61 * * * *"], "subscribers[0] (ada@example.org).schedule: bad cron"),
    (["set", "ada@example.org", "timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
    (["set", "ada@example.org", "--add-keyword", '"unclosed'], "keywords[2]: unclosed quote at column 1"),
    (["set", "ada@example.org", "max_entries", "many"], "'max_entries' must be a whole number, got 'many'"),
    (["set", "ada@example.org", "shedule", "0 7 * * *"], "unknown key 'shedule' (did you mean 'schedule'?)"),
    (["set", "nobody@example.org", "name", "X"], "no subscriber 'nobody@example.org'"),
    (["set", "grace@example.org", "--remove-keyword", "nope"], "grace@example.org has no keywords query 'nope'"),
    (["remove", "nobody@example.org"], "no subscriber 'nobody@example.org'"),
])
def test_invalid_edits_exit_2_and_leave_the_file_unchanged(args: list[str], message: str, subscribers_file: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = subscribers_file.read_bytes()
    assert run("--file", str(subscribers_file), "subscribers", *args) == 2
    assert message in capsys.readouterr().err
    assert subscribers_file.read_bytes() == before
    assert not [p for p in subscribers_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_list_and_show(subscribers_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert run("--file", str(subscribers_file), "subscribers", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["email"] for r in rows] == ["ada@example.org", "grace@example.org"]
    assert rows[1]["keywords"] == ["causal*", '"machine learning" AND confounding']
    assert run("--file", str(subscribers_file), "subscribers", "show", "Grace@example.org") == 0
    out = capsys.readouterr().out
    assert "max_entries: 5" in out and "0 7 * * * (UTC)" in out


def test_add_shows_what_the_profile_would_match(subscribers_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import LISTING

    state = subscribers_file.parent / ".newsletter" / "state.sqlite3"
    assert run("--state", str(state), "ingest", str(LISTING)) == 0
    capsys.readouterr()
    assert run("--file", str(subscribers_file), "subscribers", "add", "eve@example.org",
               "--keyword", '"data mixture"') == 0
    out = capsys.readouterr().out
    assert "added eve@example.org" in out and "RegMix" in out and "of 49 entries match" in out


def test_two_editors_at_once_both_land(subscribers_file: Path) -> None:
    def add(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "newsletter", "--quiet", "--file", str(subscribers_file),
                                 "subscribers", "add", f"user{i}@example.org", "--keyword", f"topic{i}"],
                                stderr=subprocess.PIPE)
    procs = [add(i) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    text = subscribers_file.read_text()
    assert all(f"user{i}@example.org" in text for i in range(6))
    assert text.startswith("# Subscribers of the lab digest.")
    assert run("--file", str(subscribers_file), "validate") == 0
