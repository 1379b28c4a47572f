"""Papers a profile must keep (issue 16): `must_include` / `must_exclude` on a subscriber; `validate`
and every edit fail, naming the paper and the clause, when the profile would break one, and the
file stays byte for byte as it was. Store-held subscribers keep them too (with `trending`, `updates`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run
from newsletter.models import Entry, Links
from newsletter.store import Store

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
KEEP = Entry(id="2611.00020", title="A language model survey of surveys", abstract="We review.",
             authors=("A. Author",), links=Links(page="https://example.org/20"), sources=("t",))
AVOID = Entry(id="2611.00030", title="Medical imaging with a language model", abstract="We segment scans.",
              authors=("B. Author",), links=Links(page="https://example.org/30"), sources=("t",))


def _project(tmp_path: Path, ada: dict[str, Any]) -> Path:
    doc = {"newsletter": {"title": "T", "sender": "T <t@example.org>"},
           "subscribers": [{"email": "ada@example.org", "keywords": ['"language model"'], **ada}]}
    path = tmp_path / "subscribers.yaml"
    # written as a person would: the ids unquoted (YAML would read 2611.00020 as a number)
    text = yaml.safe_dump(doc, sort_keys=False)
    ids = [*ada.get("must_include", []), *ada.get("must_exclude", [])]
    for paper_id in ids:
        text = text.replace(f"'{paper_id}'", paper_id)
    assert all(f"- {paper_id}\n" in text for paper_id in ids)  # each id really is unquoted
    path.write_text(text)
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        store.upsert_entries([KEEP, AVOID], NOW)
    return path


def test_validate_names_the_paper_and_the_clause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = _project(tmp_path, {"must_include": ["2611.00020"]})
    assert run("--file", str(ok), "validate") == 0
    bad = _project(tmp_path, {"exclude": ["title:survey"], "must_include": ["2611.00020"],
                              "must_exclude": ["2611.00030"]})
    capsys.readouterr()
    assert run("--file", str(bad), "validate") == 2
    err = capsys.readouterr().err
    assert ("ada@example.org would lose 2611.00020 (must_include, \u201cA language model survey of surveys\u201d): "
            'excluded by NOT title:survey ("survey" in the title)') in err
    assert ("ada@example.org would receive 2611.00030 (must_exclude, \u201cMedical imaging with a language "
            'model\u201d): matched by "language model"') in err


def test_an_edit_that_drops_a_must_include_paper_changes_nothing(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path, {"must_include": ["2611.00020"], "must_exclude": ["2611.00030"],
                               "exclude": ["medical"]})
    before = path.read_bytes()
    assert run("--file", str(path), "subscribers", "set", "ada@example.org", "--add-exclude", "survey*") == 2
    assert "would lose 2611.00020 (must_include" in capsys.readouterr().err
    assert run("--file", str(path), "subscribers", "set", "ada@example.org", "--remove-exclude", "medical") == 2
    assert "would receive 2611.00030 (must_exclude" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert run("--file", str(path), "subscribers", "set", "ada@example.org", "--add-keyword", "review") == 0
    assert path.read_bytes() != before  # an edit that keeps them is saved


def test_a_store_held_subscriber_keeps_its_guarantees_and_sections(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path, {})
    doc = yaml.safe_load(path.read_text())
    doc["subscribers"] = []
    path.write_text(yaml.safe_dump(doc))
    rows = tmp_path / "held.jsonl"
    rows.write_text(json.dumps({"email": "held@example.org", "keywords": ['"language model"'], "trending": 3,
                                "updates": False, "must_include": ["2611.00020"]}) + "\n")
    assert run("--file", str(path), "subscribers", "import", str(rows)) == 0
    with Store(tmp_path / ".newsletter" / "state.sqlite3") as store:
        held = store.subscriber("held@example.org")
    assert held is not None and (held.trending, held.updates, held.must_include) == (3, False, ("2611.00020",))
    capsys.readouterr()
    assert run("--file", str(path), "subscribers", "set", "held@example.org", "--add-exclude", "title:survey") == 2
    assert "would lose 2611.00020 (must_include" in capsys.readouterr().err
    assert run("--file", str(path), "subscribers", "export", "--format", "jsonl") == 0
    (exported,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert exported["must_include"] == ["2611.00020"] and exported["trending"] == 3 and exported["updates"] is False
