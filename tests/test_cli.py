"""End to end through the CLI: ingest, entries, preview, send to a real SMTP server, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import LISTING, run, write_config

AT = "2026-11-27T09:00:00+00:00"  # a Friday, after every 07:00 slot of the test config


def state_of(project: Path) -> Path:
    return project.parent / ".newsletter" / "state.sqlite3"


def test_ingest_listing_then_entries_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.sqlite3"
    assert run("--state", str(state), "ingest", str(LISTING)) == 0
    assert "49 new, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert run("--state", str(state), "ingest", str(LISTING)) == 0
    assert "0 new, 0 updated, 49 unchanged" in capsys.readouterr().out

    assert run("--state", str(state), "entries", "--json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 49
    for key in ("id", "title", "abstract", "authors", "author_count", "published", "upvotes", "url", "sources"):
        assert all(key in e for e in entries), key
    by_title = {e["title"]: e for e in entries}
    regmix = by_title["RegMix: Data Mixture as Regression for Language Model Pre-training"]
    assert regmix["author_count"] == 8
    assert regmix["published"] == "2024-07-01"
    assert regmix["upvotes"] == 7
    assert regmix["abstract"].startswith("The data mixture for large language model pre-training")
    assert regmix["abstract"].endswith("https://github.com/sail-sg/regmix.")
    # a paper with no metadata lines at all
    china = next(e for t, e in by_title.items() if t.startswith("Chinese vs. World Bank"))
    assert china["author_count"] is None and china["abstract"].startswith("Debates about whether")


def test_entries_export_can_be_ingested_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    run("--state", str(first), "ingest", str(LISTING))
    capsys.readouterr()
    run("--state", str(first), "entries", "--json")
    export = tmp_path / "export.json"
    export.write_text(capsys.readouterr().out)
    assert run("--state", str(second), "ingest", str(export)) == 0
    assert "49 new" in capsys.readouterr().out
    run("--state", str(second), "entries", "--json")
    again = json.loads(capsys.readouterr().out)
    original = json.loads(export.read_text())
    strip = lambda e: {k: v for k, v in e.items() if k not in ("sources", "first_seen", "updated")}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, again))) == sorted(map(json.dumps, map(strip, original)))
    # and ingesting the export into the first store adds nothing
    assert run("--state", str(first), "ingest", str(export)) == 0
    assert "0 new" in capsys.readouterr().out


def test_preview_writes_files_and_never_touches_state(project: Path) -> None:
    out = project.parent / "preview"
    assert run("--file", str(project), "preview", "--out", str(out), "--at", AT) == 0
    assert not state_of(project).exists()
    index = (out / "index.html").read_text()
    for email in ("ada@example.org", "grace@example.org", "nobody@example.org"):
        assert email in index
    for email in ("ada@example.org", "grace@example.org"):
        for ext in (".html", ".txt", ".eml"):
            assert (out / f"{email}{ext}").stat().st_size > 0
    assert not (out / "nobody@example.org.html").exists()
    assert "nothing to send" in index
    html = (out / "ada@example.org.html").read_text()
    assert html.count('class="hit"') > 0 and "Language Model" in html
    eml = message_from_bytes((out / "ada@example.org.eml").read_bytes(), policy=policy.default)
    assert eml["To"] == "Ada <ada@example.org>"


def test_preview_leaves_existing_state_byte_for_byte(project: Path, tmp_path: Path) -> None:
    state = state_of(project)
    assert run("--file", str(project), "send", "--at", AT, "--outbox", str(tmp_path / "box")) == 0
    before = state.read_bytes()
    assert run("--file", str(project), "preview", "--out", str(tmp_path / "p"),
               "--at", "2026-11-28T09:00:00+00:00") == 0
    assert state.read_bytes() == before


def test_send_delivers_one_message_per_matching_subscriber(smtp_server, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    assert run("--file", str(project), "send", "--at", AT) == 0
    recipients = sorted(r for _, rcpts, _ in recorder.messages for r in rcpts)
    assert recipients == ["ada@example.org", "grace@example.org"]
    for (mail_from, rcpts, _raw), msg in zip(recorder.messages, recorder.parsed()):
        assert mail_from == "digest@example.org" and len(rcpts) == 1
        assert msg["To"].addresses[0].addr_spec == rcpts[0]
        assert msg.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert msg["Message-ID"].endswith("@example.org>")
        assert msg["List-Id"] and msg["List-Unsubscribe"] and msg["Date"]
    out = capsys.readouterr().out
    assert "nobody@example.org: nothing sent (none of the new entries matched the profile)" in out

    # a second send delivers nothing new
    assert run("--file", str(project), "send", "--at", AT) == 0
    assert len(recorder.messages) == 2
    # and neither does a later one with no new papers
    assert run("--file", str(project), "send", "--at", "2026-11-28T09:00:00+00:00") == 0
    assert len(recorder.messages) == 2


def test_ada_gets_at_most_max_entries_ranked(smtp_server, tmp_path: Path) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    run("--file", str(project), "send", "--at", AT)
    ada = next(m for m in recorder.parsed() if m["To"].addresses[0].addr_spec == "ada@example.org")
    text = ada.get_body(preferencelist=("plain",)).get_content()
    assert "3 papers matched your profile." in text
    assert "Subject" not in text and "3 new papers" in str(ada["Subject"])


def test_broken_config_reports_every_problem_and_touches_nothing(smtp_server, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recorder, port = smtp_server
    project = write_config(tmp_path, port=port, subscribers=(
        "  - email: not-an-address\n"
        "    keywords: ['\"language model']\n"
        "  - email: ada@example.org\n"
        "    keywords: [rag]\n"
        "    timezone: Mars/Olympus\n"
        "    shedule: '0 7 * * *'\n"
        "  - email: ADA@example.org\n"
        "    keywords: [x]\n"
        "    schedule: '61 * * * *'\n"))
    assert run("--file", str(project), "send", "--at", AT) == 2
    err = capsys.readouterr().err
    f = str(project)
    expected = [
        f"{f}:12:12: subscribers[0].email: An email address must have an @-sign.",
        f"{f}:13:17: subscribers[0].keywords[0]: unclosed quote at column 1",
        f"{f}:16:15: subscribers[1] (ada@example.org).timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as Europe/London)",
        f"{f}:17:5: subscribers[1]: unknown key 'shedule' (did you mean 'schedule'?)",
        f"{f}:18:12: subscribers[2].email: duplicate subscriber 'ada@example.org' (already subscribers[1])",
        f"{f}:20:15: subscribers[2].schedule: bad cron '61 * * * *': Error validating expression '61': "
        "the last value (61) is higher than the maximum value (59)",
    ]
    for line in expected:
        assert line in err, line
    assert "error: 6 problems in" in err
    assert "Traceback" not in err
    assert recorder.messages == []
    assert not state_of(project).exists()


def test_validate_ok_and_help_for_every_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--file", str(project), "validate") == 0
    assert "ok (3 subscribers, 1 sources)" in capsys.readouterr().out
    for command in ("validate", "ingest", "entries", "match", "preview", "send", "status"):
        assert run(command, "--help") == 0
        assert f"usage: newsletter {command}" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--file", str(tmp_path / "nope.yaml"), "validate") == 2
    assert "nope.yaml: no such file (create it from subscribers.example.yaml" in capsys.readouterr().err


def test_invalid_yaml_syntax_points_at_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text("newsletter:\n  title: [unclosed\nsubscribers: []\n")
    assert run("--file", str(path), "validate") == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and "invalid YAML" in err


def test_yaml_tags_never_execute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "subscribers.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"newsletter: !!python/object/apply:os.system ['touch {marker}']\nsubscribers: []\n")
    assert run("--file", str(path), "validate") == 2
    assert not marker.exists()
    assert "newsletter: expected a mapping of keys" in capsys.readouterr().err


def test_outbox_writes_a_maildir(project: Path, tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    assert run("--file", str(project), "send", "--at", AT, "--outbox", str(box)) == 0
    files = list((box / "new").iterdir())
    assert len(files) == 2
    msgs = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert sorted(m["To"].addresses[0].addr_spec for m in msgs) == ["ada@example.org", "grace@example.org"]


def test_dry_run_lists_and_records_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--file", str(project), "send", "--at", AT, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "ada@example.org: would send 3 entries" in out
    assert "nobody@example.org: nothing to send" in out
    assert not state_of(project).exists()


def test_python_dash_m_entry_point(project: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "newsletter", "--file", str(project), "validate"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ok (3 subscribers" in done.stdout


def test_validate_warns_about_queries_that_cannot_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subs = "  - email: ada@example.org\n    keywords: ['NOT survey', 'the OR of', quantization]\n"
    project = write_config(tmp_path, subscribers=subs)
    assert run("--file", str(project), "validate") == 0
    out = capsys.readouterr().out
    assert (f"{project}:13:16: warning: subscribers[0] (ada@example.org).keywords[0]: 'NOT survey' "
            "can never match: every term is negated") in out
    assert "keywords[1]: 'the OR of' consists only of stop words" in out
    assert "keywords[2]" not in out
