"""Issue 15, the parts that had no test of their own: a short secret, private state files, a mistyped
`--state` (finding 21); one-click unsubscribe while subscribers.yaml has a YAML 1.1 number (finding 4);
credentials in source URLs in logs, status and the workbench (finding 14); 3,000 NOTs (finding 17)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer

from browser import serving
from conftest import DATA, free_port, run, write_config
from newsletter import tokens
from newsletter.store import Store
from newsletter.workbench import Workbench, app
from test_config import Raw, write
from test_preview_files import umask_022  # noqa: F401  # a fixture
from test_run_e2e import _wait_for

SECRET = "test-secret-not-for-production"
AT = "2026-11-27T09:00:00+00:00"


def _up(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


# --- finding 21: hardening ---------------------------------------------------------------------

SHORT = ("error: NEWSLETTER_SECRET is too short ({n} characters): use at least 16 random characters, e.g. from "
         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`\n")


@pytest.mark.parametrize("command", [["send", "--dry-run", "--at", AT],
                                     ["preview", "--no-fetch", "--at", AT, "--out", "pv"]])
def test_a_short_secret_is_refused_by_every_command_that_signs(command: list[str], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_config(tmp_path)
    command = [str(tmp_path / a) if a == "pv" else a for a in command]
    for secret in ("x", "fifteen-chars!!"):
        monkeypatch.setenv("NEWSLETTER_SECRET", secret)
        assert run("--file", str(project), *command) == 2
        assert capsys.readouterr().err == SHORT.format(n=len(secret))
    assert not (tmp_path / "pv").exists()
    monkeypatch.setenv("NEWSLETTER_SECRET", "sixteen-chars!!!")
    monkeypatch.setenv("NEWSLETTER_SECRET_PREVIOUS", "a-long-enough-old-secret, old")
    assert run("--file", str(project), "send", "--dry-run", "--at", AT) == 2
    assert capsys.readouterr().err == SHORT.format(n=3).replace("NEWSLETTER_SECRET", "NEWSLETTER_SECRET_PREVIOUS")
    monkeypatch.delenv("NEWSLETTER_SECRET_PREVIOUS")
    assert run("--file", str(project), "send", "--dry-run", "--at", AT) == 0


def test_serve_refuses_a_short_secret_before_it_listens(tmp_path: Path) -> None:
    # a child process: were the secret taken, `serve` would listen until a signal
    project = write_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "newsletter", "--file", str(project), "serve", "--port", "0"],
                          env={**os.environ, "NEWSLETTER_SECRET": "x"}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", SHORT.format(n=1))


@pytest.mark.usefixtures("umask_022")
def test_the_state_file_is_private(tmp_path: Path) -> None:
    """It holds addresses and signed links: never the umask's 0644, nor its WAL and shared-memory files."""
    project = write_config(tmp_path)
    assert run("--file", str(project), "ingest") == 0
    state = tmp_path / ".newsletter" / "state.sqlite3"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    with Store(state) as store:
        assert store.entries()  # an open store has its -wal and -shm beside it
        companions = [state.with_name(state.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in companions)
        for path in companions:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["entries"], ["match", "model"],
                                     ["subscribers", "list"], ["subscribers", "list", "--json"], ["subscribers", "export"],
                                     ["explain", "2611.00001"]])
def test_a_mistyped_state_is_a_usage_error(command: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    assert run("--file", str(project), "ingest") == 0  # the real state exists beside the file
    capsys.readouterr()
    typo = tmp_path / "typo" / "x.db"
    assert run("--file", str(project), "--state", str(typo), *command) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: {typo}: no state file there (check --state; `newsletter ingest` or `send` "
                            "create it)\n")
    assert captured.out == ""  # not an empty state shown as if it were this one
    assert not typo.parent.exists()


# --- finding 4: one-click unsubscribe while the file has a YAML 1.1 number -------------------------

def _document(web_port: int, **bad: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"max_entries": 10, "min_upvotes": 0}
    settings.update(bad)
    return {"newsletter": {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                           "base_url": f"http://127.0.0.1:{web_port}", "schedule": "0 7 * * *", "timezone": "UTC",
                           "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none"}, **settings},
            "subscribers": [{"email": "ada@example.org", "keywords": ["model"]},
                            {"email": "bob@example.org", "keywords": ["model"]}]}


def _states(project: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """What `newsletter status --json` says of each subscriber's state."""
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json") == 0
    return {s["email"]: s["state"] for s in json.loads(capsys.readouterr().out)["subscribers"]}


@pytest.mark.parametrize(("key", "raw", "problem"), [
    ("max_entries", "010", "'010' has a leading zero, which YAML 1.1 reads as an octal number (8); write 10"),
    ("min_upvotes", "1:30", "'1:30' is a base-60 number in YAML 1.1 (90); write a plain decimal number"),
])
def test_one_click_unsubscribe_is_recorded_while_the_file_has_a_yaml_11_number(
        key: str, raw: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web_port = free_port()
    project = write(tmp_path, _document(web_port))
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "serve",
                             "--port", str(web_port)], env={**os.environ, "NEWSLETTER_SECRET": SECRET},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _up(f"http://127.0.0.1:{web_port}/health"))
        write(tmp_path, _document(web_port, **{key: Raw(raw)}))  # an edit with a YAML 1.1 number lands
        assert run("--file", str(project), "validate") == 2
        assert problem in capsys.readouterr().err
        answer = httpx.post(f"http://127.0.0.1:{web_port}/unsubscribe/{tokens.sign('ada@example.org', SECRET)}",
                            content=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"{project} changed but is invalid; keeping the previous configuration: " in err
    assert problem in err
    write(tmp_path, _document(web_port))  # the edit fixed: the store kept the unsubscribe
    assert _states(project, capsys) == {"ada@example.org": "unsubscribed", "bob@example.org": "active"}


# --- finding 14: credentials in source URLs ---------------------------------------------------------

USER, TOKEN, KEY = "reader", "s3cr3tT0ken", "K3YK3YK3Y"
LEAKS = (TOKEN, KEY, f"{USER}:")


def _credential_sources(httpserver: HTTPServer) -> tuple[str, list[dict[str, str]]]:
    httpserver.expect_request("/feed").respond_with_data(
        (DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes(), content_type="application/json")
    httpserver.expect_request("/broken").respond_with_data("down", status=500)
    base = f"http://{USER}:{TOKEN}@127.0.0.1:{httpserver.port}"
    shown = f"http://***@127.0.0.1:{httpserver.port}"
    return shown, [{"name": "good", "type": "hf-daily", "url": f"{base}/feed?key={KEY}"},
                   {"name": "broken", "type": "hf-daily", "url": f"{base}/broken?key={KEY}"}]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in LEAKS if s.encode() in data]


def _sources_yaml(sources: list[dict[str, str]]) -> str:
    return "".join("  " + line + "\n" for line in yaml.safe_dump({"sources": sources}).splitlines())


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_credentials_in_source_urls_never_reach_run_logs_status_or_the_state(
        verbose: list[str], httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shown, sources = _credential_sources(httpserver)
    project = write_config(tmp_path, sources=_sources_yaml(sources))
    done = subprocess.run([sys.executable, "-m", "newsletter", "--file", str(project), *verbose, "run", "--once",
                           "--port", "0"], env={**os.environ, "NEWSLETTER_SECRET": SECRET},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _leaks(done.stdout + done.stderr) == []
    assert f"source 'broken': {shown}/broken?key=*** answered HTTP 500" in done.stderr
    if verbose:  # httpx logs each request at INFO: shown, redacted
        assert f'HTTP Request: GET {shown}/feed?key=*** "HTTP/1.0 200 OK"' in done.stderr
    assert run("--file", str(project), "status") == 0
    text = capsys.readouterr().out
    assert _leaks(text) == []
    assert "  broken: last fetch " in text and f"error: source 'broken': {shown}/broken?key=*** answered HTTP 500" in text
    assert "  good: last fetch " in text and "ok, 30 entries" in text
    state = b"".join(p.read_bytes() for p in (tmp_path / ".newsletter").glob("state.sqlite3*"))
    assert _leaks(state) == []
    db = sqlite3.connect(tmp_path / ".newsletter" / "state.sqlite3")
    try:
        dumped = "\n".join(db.iterdump())
    finally:
        db.close()
    assert _leaks(dumped) == [] and f"{shown}/broken?key=***" in dumped


def test_credentials_in_source_urls_never_reach_the_workbench(httpserver: HTTPServer, tmp_path: Path) -> None:
    shown, sources = _credential_sources(httpserver)
    project = write_config(tmp_path, sources=_sources_yaml(sources),
                           subscribers="  - {email: ada@example.org, name: Ada, keywords: [model]}\n")
    bench = Workbench(project, tmp_path / ".newsletter" / "state.sqlite3", {"NEWSLETTER_SECRET": SECRET},
                      at=None, fetch=True)
    key = "this-runs-key-0123456789"
    with serving(app(bench, key)) as url:
        base = f"{url}/{key}/"
        state = httpx.get(base + "api/state")
        assert state.json()["source_errors"] == [f"source 'broken': {shown}/broken?key=*** answered HTTP 500"]
        issue = httpx.get(base + "api/issue/ada@example.org")
        assert issue.status_code == 200 and issue.json()["entries"] > 0  # the good source's papers came in
        answers = [state, issue] + [httpx.get(base + path) for path in
                                    ("", "workbench.js", "api/version", "email/ada@example.org",
                                     "api/explain?paper=model")]
    for answer in answers:
        assert answer.status_code == 200, answer.url
        assert _leaks(answer.content) == [], answer.url


# --- finding 17: a run of 3,000 NOTs, through the commands -------------------------------------

def test_three_thousand_nots_through_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_config(tmp_path)
    assert run("--file", str(project), "ingest") == 0
    capsys.readouterr()
    for query, same_as in (("NOT " * 3000 + "model", "model"), ("NOT " * 3001 + "model", "NOT model")):
        assert run("--file", str(project), "match", "--json", query) == 0
        deep = capsys.readouterr()
        assert run("--file", str(project), "match", "--json", same_as) == 0
        plain = json.loads(capsys.readouterr().out)
        assert plain and deep.err == ""
        assert [(e["id"], e["score"], e["why"]) for e in json.loads(deep.out)] == [
            (e["id"], e["score"], e["why"]) for e in plain]
    for args in (["NOT " * 3000], ["model", "--exclude", "NOT " * 3000]):
        assert run("--file", str(project), "match", *args) == 2
        assert capsys.readouterr().err == "error: query: missing term after 'NOT' at column 12001\n"


def test_three_thousand_nots_through_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"newsletter": {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                          "base_url": "https://digest.example.org",
                          "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none"}},
           "subscribers": [{"email": "ada@example.org", "keywords": ["language", "NOT " * 3000 + "model"]},
                           {"email": "bob@example.org", "keywords": ["NOT " * 3000],
                            "exclude": ["NOT " * 2999 + "("]}]}
    path = tmp_path / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100_000))
    assert run("--file", str(path), "validate") == 2
    lines = path.read_text().splitlines()

    def at(query: str, column: int) -> str:
        """FILE:LINE:COL of a query's column, the query being a list item of its own line."""
        row = next(n for n, line in enumerate(lines, 1) if line.strip() in (f"- {query}", f"- '{query}'"))
        return f"{path}:{row}:{lines[row - 1].index(query) + column}"

    assert capsys.readouterr().err.splitlines() == [
        f"{at('NOT ' * 3000, 12001)}: subscribers[1] (bob@example.org).keywords[0]: missing term after 'NOT' "
        "at column 12001",
        f"{at('NOT ' * 2999 + '(', 11998)}: subscribers[1] (bob@example.org).exclude[0]: missing term after '(' "
        "at column 11998",
        f"error: 2 problems in {path}",
    ]


def test_a_state_file_made_readable_by_others_is_made_private_when_opened(tmp_path: Path) -> None:
    """Finding 21: a state file from a release that followed the umask (0644) is tightened; an
    unrelated SQLite file passed as --state is refused and its mode left alone."""
    state = tmp_path / "state.sqlite3"
    with Store(state):
        pass
    os.chmod(state, 0o644)
    with Store(state):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE photos (name TEXT)")
    db.commit()
    db.close()
    os.chmod(other, 0o644)
    with pytest.raises(Exception, match="not a newsletter state file"):
        Store(other)
    assert stat.S_IMODE(other.stat().st_mode) == 0o644
