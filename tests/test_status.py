"""`newsletter status` answers "why didn't I get an email?" for each case."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import run, write_config

AT = "2026-11-27T09:00:00+00:00"
NEXT_DAY = "2026-11-28T09:00:00+00:00"


def test_status_explains_each_case(smtp_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    recorder.rcpt_replies["bounce@example.org"] = ["550 5.1.1 mailbox unavailable"]
    subs = (
        "  - email: happy@example.org\n    keywords: [model]\n"
        "  - email: nomatch@example.org\n    keywords: [xylophone]\n"
        "  - email: paused@example.org\n    keywords: [model]\n    paused: true\n"
        "  - email: gone@example.org\n    keywords: [model]\n"
        "  - email: bounce@example.org\n    keywords: [model]\n"
        "  - email: later@example.org\n    keywords: [model]\n"
    )
    sources = ("  sources:\n    - name: listing\n      type: hf-listing\n      path: data/listing.txt\n"
               "    - name: broken\n      type: file\n      path: data/missing.jsonl\n")
    project = write_config(tmp_path, port=port, subscribers=subs, sources=sources)
    state = project.parent / ".newsletter" / "state.sqlite3"
    from newsletter.store import Store

    with Store(state) as store:
        store.set_unsubscribed("gone@example.org", datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert run("--file", str(project), "send", "--at", AT, "--subscriber", "happy@example.org") == 0
    assert run("--file", str(project), "send", "--at", AT) == 3  # the bounce
    assert run("--file", str(project), "send", "--at", NEXT_DAY, "--subscriber", "happy@example.org") == 0
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json", "--at", NEXT_DAY) == 0
    info = json.loads(capsys.readouterr().out)
    why = {s["email"]: s["why"] for s in info["subscribers"]}
    assert why["nomatch@example.org"].startswith("none of the new entries matched the profile")
    assert "source 'broken' failed at its last fetch: source 'broken': no such file" in why["nomatch@example.org"]
    assert why["happy@example.org"].startswith("no new entries")
    assert why["paused@example.org"] == "paused in the subscribers file (`newsletter subscribers resume` to resume)"
    assert why["gone@example.org"] == "unsubscribed: nothing is sent any more"
    assert why["bounce@example.org"] == "bounced: the server refused it permanently: 550 5.1.1 mailbox unavailable"
    assert why["later@example.org"].startswith("last issue delivered at 2026-11-27T09:00")
    assert [f["email"] for f in info["failed"]] == ["bounce@example.org"]
    assert run("--file", str(project), "status", "--at", NEXT_DAY) == 0
    text = capsys.readouterr().out
    assert "bounce@example.org [active]" in text and "bounced: the server refused it permanently" in text
    assert "broken: last fetch" in text and "error: source 'broken'" in text
