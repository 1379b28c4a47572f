"""The pipeline's batch path (many due subscribers) builds exactly the issues the exact path builds."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import write_config
from newsletter import builder, ingest, pipeline
from newsletter.config import load
from newsletter.store import Store

AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
QUERIES = ['"language model"', "causal*", "title:diffusion", "model AND NOT survey", "LLM OR agent*",
           '"machine learning" AND (treatment OR confounding)', "author:smith", "data", "interpretab*",
           "quantization OR distillation", "RL", '"pre-training"']


def _issues(project: Path, monkeypatch: pytest.MonkeyPatch, batch_from: int) -> dict[str, list[tuple[str, float]]]:
    monkeypatch.setattr(builder, "BATCH_FROM", batch_from)
    config = load(project)
    store = Store.snapshot(project.parent / "none.sqlite3")
    ingest.ingest_sources(store, config, AT)
    planned, _ = pipeline.plan(config, store, AT, secret="s")
    store.close()
    return {p.subscriber.email: [(m.entry.id, m.score, m.hits) for m in p.issue.matches] for p in planned}


def test_batch_and_exact_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    subs = ""
    for i in range(80):
        kw = rng.sample(QUERIES, rng.randint(1, 4))
        ex = rng.sample(["survey", "causal*", "title:model"], rng.randint(0, 1))
        subs += (f"  - email: u{i}@example.org\n    keywords: {kw!r}\n    exclude: {ex!r}\n"
                 f"    max_entries: {rng.randint(1, 8)}\n    min_upvotes: {rng.choice([0, 0, 1])}\n"
                 f"    timezone: {rng.choice(['UTC', 'Europe/London', 'Asia/Tokyo'])}\n")
    project = write_config(tmp_path, subscribers=subs)
    batch = _issues(project, monkeypatch, 1)
    exact = _issues(project, monkeypatch, 10**9)
    assert batch == exact
    assert sum(1 for v in exact.values() if v) > 40
