"""`status` tells "no list that day", "nothing matched" and "source failed: ... will retry at ..."
apart (issue 11, items 2 and 3): the daily-papers API emulated on loopback, arXiv's real empty
weekend listing, and a source answering HTTP 500."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from conftest import DATA, Recorder, run
from daily_api import DailyApi

ITEMS = json.loads((DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes())
SAT, SUN = "2026-11-28T09:00:00+00:00", "2026-11-29T09:00:00+00:00"


def _status(project: Path, at: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert run("--file", str(project), "status", "--json", "--at", at) == 0
    return json.loads(capsys.readouterr().out)


def test_status_tells_no_list_from_nothing_matched_from_a_failed_source(
        httpserver: HTTPServer, smtp_server: tuple[Recorder, int], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    api = DailyApi(date(2026, 11, 29), {date(2026, 11, 27): ITEMS})  # Friday's list; none at the weekend
    httpserver.expect_request("/api/daily_papers").respond_with_handler(api)
    httpserver.expect_request("/broken").respond_with_data("boom", status=500)
    shutil.copy(DATA / "arxiv_rss_cs.CL_weekend_empty_2026-08-01.xml", tmp_path / "weekend.xml")
    doc = {"newsletter": {
        "title": "T", "sender": "T <t@example.org>", "schedule": "0 7 * * *",
        "smtp": {"host": "127.0.0.1", "port": smtp_server[1], "tls": "none", "timeout": 5},
        "sources": [
            {"name": "hf", "type": "hf-daily", "url": httpserver.url_for("/api/daily_papers") + "?date={date}"},
            {"name": "cl", "type": "arxiv", "path": "weekend.xml"},
            {"name": "broken", "type": "hf-daily", "url": httpserver.url_for("/broken")}]},
        "subscribers": [{"email": "ada@example.org", "keywords": ["model OR learning OR data"]},
                        {"email": "xylo@example.org", "keywords": ["xylophone"]}]}
    project = tmp_path / "subscribers.yaml"
    project.write_text(yaml.safe_dump(doc, sort_keys=False))

    assert run("--file", str(project), "send", "--at", SAT) == 0  # a failed source is reported, not fatal
    info = _status(project, SAT, capsys)
    why = {s["email"]: s["why"] for s in info["subscribers"]}
    assert why["ada@example.org"].startswith("last issue delivered at 2026-11-28T09:00")
    assert why["xylo@example.org"].startswith("none of the new entries matched the profile; ")
    assert why["xylo@example.org"].endswith(
        f"source 'broken' failed at its last fetch: source 'broken': {httpserver.url_for('/broken')} answered "
        "HTTP 500; will retry at 2026-11-28 09:30 UTC")
    sources = {s["name"]: s for s in info["sources"]}
    assert sources["hf"]["error"] is None and sources["hf"]["no_list"] == ["hf: no list for 2026-11-28"]
    assert sources["cl"]["no_list"] == ["cl: arXiv made no announcement on Saturday (2026-11-28)"]
    assert sources["broken"]["retry_at"] == "2026-11-28 09:30 UTC"

    assert run("--file", str(project), "send", "--at", SUN) == 0
    info = _status(project, SUN, capsys)
    why = {s["email"]: s["why"] for s in info["subscribers"]}
    assert why["ada@example.org"].startswith(
        "no new entries (cl: arXiv made no announcement on Saturday (2026-11-28); "
        "cl: arXiv made no announcement on Sunday (2026-11-29); "
        "hf: no list for 2026-11-28; hf: no list for 2026-11-29); source 'broken' failed at its last fetch: ")
    assert why["ada@example.org"].endswith("will retry at 2026-11-29 09:30 UTC")
    capsys.readouterr()
    assert run("--file", str(project), "status", "--at", SUN) == 0
    text = capsys.readouterr().out
    assert "    hf: no list for 2026-11-29\n" in text
    assert "    cl: arXiv made no announcement on Sunday (2026-11-29)\n" in text
    assert "HTTP 500; will retry at 2026-11-29 09:30 UTC" in text
    assert not any(s["name"].startswith("~") for s in info["sources"])  # the store's records stay hidden
