"""`newsletter.state:` in the YAML (issue 14): the state named in the file (a path relative to it, or a
postgresql:// URL) serves every command without `--state`; `--state` still wins; a password in the
URL, or a scheme we cannot use, is a validation error naming the line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import run, write_config
from newsletter.deployment import Deployment
from newsletter.scheduler import Service
from newsletter.store import Store, is_url

AT = "2026-11-27T09:00:00+00:00"


def _with_state(project: Path, state: str) -> Path:
    doc = yaml.safe_load(project.read_text())
    doc["newsletter"]["state"] = state
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    return project


def test_the_state_named_in_the_file_serves_every_command(smtp_server, tmp_path: Path, state: Path | str,  # noqa: ANN001
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    setting = str(state) if is_url(state) else "db/digest.sqlite3"  # a path is relative to the file
    project = _with_state(write_config(tmp_path, port=port), setting)
    (tmp_path / "db").mkdir()
    readers = tmp_path / "readers.jsonl"
    readers.write_text(json.dumps({"email": "held@example.org", "keywords": ['"language model"']}) + "\n")
    assert run("--file", str(project), "subscribers", "import", str(readers)) == 0
    assert run("--file", str(project), "send", "--at", AT) == 0
    assert run("--file", str(project), "send", "--at", AT) == 0  # the same ledger: nothing twice
    sent = Counter(rcpts[0] for _, rcpts, _ in recorder.messages)
    assert sent["held@example.org"] == 1 and set(sent.values()) == {1}
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json", "--at", AT) == 0
    rows = {s["email"]: s for s in json.loads(capsys.readouterr().out)["subscribers"]}
    assert rows["held@example.org"]["last_issue"]["status"] == "sent"
    where = state if is_url(state) else tmp_path / "db" / "digest.sqlite3"
    with Store(where) as store:
        assert store.subscriber_count() == 1 and {i.subscriber for i in store.issues("sent")} == set(sent)
    assert not (tmp_path / ".newsletter").exists()  # the default state was never made
    # the service and the library resolve it the same way; --state still wins
    assert Service(project, None, {}, port=None).state_path == where
    other = tmp_path / "other.sqlite3"
    assert Deployment.open(project, other, {}).state == other


@pytest.mark.parametrize(("value", "says"), [
    ("postgresql://newsletter:hunter2@db.example.org/digest", "holds a password"),
    ("postgresql:///digest?host=/run/pg&password=hunter2", "holds a password"),
    ("mysql://db.example.org/digest", "'mysql://' is not a state this newsletter can use"),
    ("", "is empty"),
])
def test_a_state_setting_that_cannot_be_used_is_refused(tmp_path: Path, value: str, says: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project = _with_state(write_config(tmp_path), value)
    before = project.read_bytes()
    assert run("--file", str(project), "validate") == 2
    err = capsys.readouterr().err
    line = next(n for n, text in enumerate(project.read_text().splitlines(), start=1) if "state:" in text)
    assert f"subscribers.yaml:{line}:" in err and f"newsletter.state: {says}" in err.replace("'' ", "")
    assert "hunter2" not in err and project.read_bytes() == before
