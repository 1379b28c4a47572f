"""Validation of trending subscriptions (issue 11, item 1): both forms accepted, a profile that can
never receive anything explained. Configurations are built as data (yaml.safe_dump)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from newsletter.config import load
from newsletter.errors import ConfigError

HF = {"name": "hf", "type": "hf-daily", "url": "https://huggingface.co/api/daily_papers?date={date}"}
ARXIV = {"name": "cl", "type": "arxiv", "url": "https://rss.arxiv.org/rss/cs.CL"}


def _write(tmp_path: Path, subscribers: list[dict[str, Any]], sources: list[dict[str, Any]] | None = None) -> Path:
    doc = {"newsletter": {"title": "T", "sender": "T <t@example.org>", "sources": sources or [HF]},
           "subscribers": subscribers}
    path = tmp_path / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _at(path: Path, text: str) -> str:
    """`file:line:col` of the first line holding `text` (1-based, as the messages say)."""
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if text in line)
    return f"{path}:{n + 1}:{lines[n].index(text) + 1}"


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def test_both_forms_are_accepted(tmp_path: Path) -> None:
    config = load(_write(tmp_path, [
        {"email": "t@example.org", "max_entries": 4},
        {"email": "e@example.org", "keywords": []},
        {"email": "k@example.org", "keywords": ["LLM"], "trending": 3, "updates": False},
    ]))
    t, e, k = config.subscribers
    assert (t.trending_only, t.keywords, t.trending, t.updates, t.max_entries) == (True, (), 0, True, 4)
    assert e.trending_only
    assert (k.trending_only, k.trending, k.updates) == (False, 3, False)


def test_trending_n_on_a_subscriber_without_keywords_is_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"email": "t@example.org", "trending": 3}])
    assert _problems(path) == (
        f"{_at(path, '3')}: subscribers[0] (t@example.org).trending: this subscriber has no keywords, so every "
        "paper it gets is a trending one (max_entries of them); `trending: N` adds a section beside keyword "
        "matches: remove it, or add keywords",)


def test_a_profile_that_can_never_receive_anything_is_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"email": "t@example.org"}], sources=[ARXIV])
    assert _problems(path) == (
        f"{_at(path, 'email: t@')}: subscribers[0] (t@example.org): has no keywords, so it would receive trending papers, "
        "but none of the sources ('cl' (arxiv)) gives upvotes to rank them by: it could never receive "
        "anything; add keywords, or an hf-daily source",)


def test_wrong_values_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"email": "k@example.org", "keywords": ["x"], "trending": -1, "updates": "no"}])
    problems = _problems(path)
    assert any("subscribers[0] (k@example.org).trending: must be at least 0, got -1" in p for p in problems)
    assert any("subscribers[0] (k@example.org).updates:" in p for p in problems)


def test_catch_up_and_budget_are_for_by_date_sources_only(tmp_path: Path) -> None:
    config = load(_write(tmp_path, [{"email": "t@example.org"}],
                         sources=[{**HF, "catch_up_days": 3, "request_budget": 20}]))
    assert (config.settings.sources[0].catch_up_days, config.settings.sources[0].request_budget) == (3, 20)
    path = _write(tmp_path, [{"email": "k@example.org", "keywords": ["x"]}],
                  sources=[{**ARXIV, "catch_up_days": 3}])
    (problem,) = _problems(path)
    assert problem.endswith("newsletter.sources[0].catch_up_days: only for an hf-daily source read by date "
                            "(a url with {date}, e.g. https://huggingface.co/api/daily_papers?date={date})")
