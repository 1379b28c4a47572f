"""`newsletter explain` (issue 16): the right reason in each situation, as the sentence a user reads,
on a state made by really sending (a real SMTP server), and in agreement with what `send` did."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Recorder, run
from newsletter import editing
from newsletter.deployment import Deployment
from newsletter.explain import Reason
from newsletter.matching import Profile, select
from newsletter.models import Entry, Links
from newsletter.store import Store

DAY1 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)
ENV: dict[str, str] = {}


def _paper(n: int, title: str, abstract: str = "We study something else.", upvotes: int = 5) -> Entry:
    return Entry(id=f"2611.{n:05d}", title=title, abstract=abstract, authors=("A. Author",), upvotes=upvotes,
                 links=Links(page=f"https://example.org/p/{n}"), sources=("test",))


OLD = _paper(1, "A language model seen last week")
BEST = _paper(2, "A language model for reasoning with a language model")
SURVEY = _paper(3, "A language model survey")
SECOND = _paper(4, "Language model agents")
THIRD = _paper(5, "Notes on agents", abstract="We train a language model.")
LATER = _paper(6, "A language model for tomorrow")
BULK = [_paper(100 + i, f"Graph network study {i}", abstract=("We train a graph network. " + "Word " * 80).strip(),
               upvotes=200 - i) for i in range(45)]


def _project(folder: Path, port: int, subscribers: list[dict[str, Any]]) -> Path:
    doc = {"newsletter": {"title": "Test Digest", "sender": "Test Digest <digest@example.org>",
                          "schedule": "0 7 * * *", "timezone": "UTC",
                          "smtp": {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 5}},
           "subscribers": subscribers}
    path = folder / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


ADA = {"email": "ada@example.org", "keywords": ['"language model"'], "exclude": ["title:survey"], "max_entries": 2}
BOB = {"email": "bob@example.org", "keywords": ['"language model"']}
CAROL = {"email": "carol@example.org", "keywords": ['"graph network"'], "max_entries": 45}


@pytest.fixture
def sent(tmp_path: Path, smtp_server: tuple[Recorder, int]) -> tuple[Deployment, Recorder]:
    """Day 1: OLD arrived a week before, the rest on the morning of day 1; bob is paused; one send.
    Day 2: LATER arrives; another send."""
    recorder, port = smtp_server
    dep = Deployment.open(_project(tmp_path, port, [ADA, BOB, CAROL]), None, ENV)
    with Store(dep.state) as store:
        store.upsert_entries([OLD], DAY1 - timedelta(days=7))
        store.upsert_entries([BEST, SURVEY, SECOND, THIRD, *BULK], DAY1 - timedelta(hours=3))
    editing.pause(dep, ENV, "bob@example.org", DAY1 - timedelta(hours=2), on=True)
    dep.send(DAY1, fetch=False)
    with Store(dep.state) as store:
        store.upsert_entries([LATER], DAY2 - timedelta(hours=3))
    dep.send(DAY2, fetch=False)
    return dep, recorder


def _why(dep: Deployment, paper: str, subscriber: str | None = None, issue: str | None = None) -> list[str]:
    out: list[str] = []
    dep.explain(paper, lambda r: out.append(r.sentence), subscriber=subscriber, issue=issue)
    return out


def _issues(dep: Deployment, email: str) -> list[Any]:
    with Store(dep.state) as store:
        return store.issue_heads_of([email])[email]


def test_delivered_in_which_issue_on_which_day(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    first = _issues(dep, "ada@example.org")[0]
    assert _why(dep, BEST.id, "ada@example.org") == [f"delivered in issue {first.id} on 2026-11-27"]
    # an arXiv URL or a Hugging Face paper URL, or words of the title, name the same paper
    assert _why(dep, f"https://huggingface.co/papers/{BEST.id}", "ada@example.org") == \
        _why(dep, f"https://arxiv.org/abs/{BEST.id}v2", "ada@example.org") == \
        _why(dep, "for reasoning with", "ada@example.org")


def test_not_in_any_source_window(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    first = _issues(dep, "ada@example.org")[0]
    assert _why(dep, OLD.id, "ada@example.org") == [
        f"not in any source window of ada@example.org: first seen on 2026-11-20, issue {first.id} covered "
        "2026-11-26 to 2026-11-27"]


def test_matched_but_excluded_by_the_exact_term_and_field(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    assert _why(dep, SURVEY.id, "ada@example.org") == [
        'matched "language model" but excluded by NOT title:survey: "survey" in the title']


def test_matched_but_ranked_below_the_cap(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    first = _issues(dep, "ada@example.org")[0]
    (sentence,) = _why(dep, THIRD.id, "ada@example.org")
    assert sentence.startswith(f"matched but ranked 3rd of 3 in issue {first.id} with a cap of 2: the last paper "
                               f"that made it, \u201c{SECOND.title}\u201d, scored ")
    scores = {m.entry.id: m.score for m in select([BEST, SECOND, THIRD], Profile.from_strings(['"language model"']))}
    assert sentence.endswith(f"scored {scores[SECOND.id]:g} (this one {scores[THIRD.id]:g})")


def test_held_back_as_already_delivered(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    first, second = _issues(dep, "ada@example.org")
    assert _why(dep, BEST.id, issue=second.id) == [
        f"held back from issue {second.id}: already delivered in issue {first.id} on 2026-11-27 "
        "(a paper is sent once)"]


def test_the_subscriber_was_paused_then(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    (sentence,) = _why(dep, BEST.id, "bob@example.org")
    assert sentence.startswith("no issue since the paper arrived (2026-11-27): bob@example.org is paused since "
                               "2026-11-27 (")


def test_cut_by_the_size_budget(sent: tuple[Deployment, Recorder]) -> None:
    dep, _ = sent
    (issue,) = [i for i in _issues(dep, "carol@example.org") if i.dropped]
    shown, dropped = issue.entry_count, issue.dropped
    assert shown + dropped == 45 and dropped > 0
    last = BULK[-1]  # the lowest ranked (fewest upvotes, same score): left out
    assert _why(dep, last.id, "carol@example.org") == [
        f"ranked 45th of 45, within the cap of 45, but the size budget cut issue {issue.id}: {shown} papers "
        f"shown, {dropped} left out"]


def test_explain_agrees_with_what_send_did(sent: tuple[Deployment, Recorder]) -> None:
    """For every paper and subscriber: "delivered" exactly when a delivered mail carried it."""
    dep, recorder = sent
    with Store(dep.state) as store:
        carried = store.issue_entry_ids([i.id for i in store.issues("sent")])
        owner = {i.id: i.subscriber for i in store.issues("sent")}
    received = {(owner[issue], entry) for issue, ids in carried.items() for entry in ids}
    assert len(recorder.messages) == len(owner)
    said: set[tuple[str, str]] = set()
    for paper in [OLD, BEST, SURVEY, SECOND, THIRD, LATER, *BULK]:
        dep.explain(paper.id, lambda r, p=paper: said.add((r.subscriber, p.id)) if r.code == "delivered" else None)
    assert said == received and len(received) > 40


def test_the_command_one_line_per_subscriber_and_json(sent: tuple[Deployment, Recorder],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    dep, _ = sent
    capsys.readouterr()
    assert run("--file", str(dep.config.path), "explain", SURVEY.id) == 0
    *lines, which = capsys.readouterr().out.splitlines()
    assert which == f"(the paper: {SURVEY.id}, \u201c{SURVEY.title}\u201d)"
    assert lines[0] == 'ada@example.org: matched "language model" but excluded by NOT title:survey: "survey" in the title'
    assert [line.split(":")[0] for line in lines] == ["ada@example.org", "bob@example.org", "carol@example.org"]
    assert run("--file", str(dep.config.path), "explain", SURVEY.id, "--json", "--subscriber", "ada@example.org") == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["reason"] == "excluded" and row["subscriber"] == "ada@example.org"
    assert run("--file", str(dep.config.path), "explain", "no such words at all") == 2
    assert "no stored paper matches 'no such words at all'" in capsys.readouterr().err


def test_every_subscriber_at_once_says_what_each_alone_says(sent: tuple[Deployment, Recorder]) -> None:
    """Across every subscriber `explain` reads two issues each (around the paper's arrival) and ranks
    all profiles at once; alone it reads every issue: the sentences are the same."""
    dep, _ = sent
    codes: set[str] = set()
    for paper in [OLD, BEST, SURVEY, SECOND, THIRD, LATER, *BULK]:
        together: list[Reason] = []
        dep.explain(paper.id, together.append)
        alone: list[Reason] = []
        for email in ("ada@example.org", "bob@example.org", "carol@example.org"):
            dep.explain(paper.id, alone.append, subscriber=email)
        assert together == alone
        codes.update(r.code for r in together)
    assert {"delivered", "window", "excluded", "ranked_out", "state", "cut"} <= codes
