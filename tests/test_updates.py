"""Updates to papers readers received (issue 11, items 2 and 4): an upvote change updates the stored
paper and never re-sends it; a new code link on a delivered paper appears once, in that subscriber's
"Updates"; a subscriber with `updates: false` gets none."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from email import message_from_bytes, policy

from conftest import DATA
from newsletter import ingest, pipeline, records, updates
from newsletter.config import load
from newsletter.credentials import Secrets
from newsletter.models import Entry, Links
from newsletter.store import Store

DAY1 = datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)
ITEMS = json.loads((DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes())


def _project(tmp_path: Path, items: list[Any]) -> Path:
    (tmp_path / "daily.json").write_text(json.dumps(items))
    doc = {"newsletter": {"title": "T", "sender": "T <t@example.org>", "schedule": "0 7 * * *",
                          "sources": [{"name": "hf", "type": "hf-daily", "path": "daily.json"}]},
           "subscribers": [{"email": "ada@example.org", "keywords": ["model OR learning"], "max_entries": 50},
                           {"email": "quiet@example.org", "keywords": ["model OR learning"], "max_entries": 50,
                            "updates": False}]}
    path = tmp_path / "subscribers.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _send(path: Path, store: Store, now: datetime, outbox: Path) -> dict[str, Any]:
    config = load(path)
    built, _ = pipeline.plan(config, store, now, secret="s")
    report = pipeline.send(config, store, now, secrets=Secrets(), outbox=outbox)
    assert not report.failed
    return {b.subscriber.email: b.issue for b in built}


def test_upvotes_update_code_link_once_in_updates(tmp_path: Path) -> None:
    items = json.loads(json.dumps(ITEMS))
    project = _project(tmp_path, items)
    outbox = tmp_path / "outbox"
    with Store(tmp_path / "state.sqlite3") as store:
        ingest.ingest_sources(store, load(project), DAY1 - timedelta(hours=1))
        first = _send(project, store, DAY1, outbox)
        delivered = {m.entry.id for m in first["ada@example.org"].matches}
        target = next(i for i in items if not i["paper"].get("githubRepo") and i["paper"]["id"] in delivered)
        other = next(i for i in items if i is not target and i["paper"]["id"] in delivered)

        # later that day: more upvotes on two papers, and a code link on one
        target["paper"]["upvotes"] += 50
        target["paper"]["githubRepo"] = "https://github.com/example/code"
        other["paper"]["upvotes"] += 7
        (tmp_path / "daily.json").write_text(json.dumps(items))
        (r,) = ingest.ingest_sources(store, load(project), DAY1 + timedelta(hours=5))
        assert (r.new, r.updated) == (0, 2)
        stored = {e.id: e for e in store.entries()}
        assert stored[other["paper"]["id"]].upvotes == other["paper"]["upvotes"]
        assert stored[target["paper"]["id"]].links.code == "https://github.com/example/code"

        second = _send(project, store, DAY1 + timedelta(days=1), outbox)
        ada = second["ada@example.org"]
        assert ada.matches == ()  # nothing is re-sent as new
        (update,) = ada.updates
        assert (update.entry.id, update.kind, update.detail) == (
            target["paper"]["id"], "code", "code: https://github.com/example/code")
        assert update.entry.links.code == "https://github.com/example/code"
        assert second["quiet@example.org"].updates == ()
        # the next issue does not carry it again
        third = _send(project, store, DAY1 + timedelta(days=2), outbox)
        assert third["ada@example.org"].updates == () and third["ada@example.org"].matches == ()
        messages = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in (outbox / "new").iterdir()]
        assert sorted(str(m["To"]) for m in messages) == ["ada@example.org", "ada@example.org", "quiet@example.org"]
        texts = [m.get_body(("plain",)).get_content().replace("\r\n", "\n") for m in messages]  # type: ignore[union-attr]
        htmls = [m.get_body(("html",)).get_content() for m in messages]  # type: ignore[union-attr]
        (update_text,) = [t for t in texts if "\nUpdates\n=======\n" in t]
        assert "What changed: code: https://github.com/example/code" in " ".join(update_text.split())
        (update_html,) = [h for h in htmls if ">Updates</h2>" in h]
        assert sorted(str(m["Subject"]) for m in messages if "update" in str(m["Subject"])) == [
            "T · 27 Nov 2026: an update to a paper you received"]
        assert "code: https://github.com/example/code" in update_html


def test_changes_between_two_sightings() -> None:
    now = DAY1
    old = Entry(id="2601.00001", title="A", links=Links(page="https://huggingface.co/papers/2601.00001"))
    assert updates.changes(old, old, now) == []
    code = Entry(id=old.id, title="A", links=Links(page=old.links.page, code="https://github.com/a/b"))
    assert [(c.kind, c.detail) for c in updates.changes(old, code, now)] == [("code", "code: https://github.com/a/b")]
    trending = Entry(id=old.id, title="A", upvotes=12, links=old.links)
    assert [(c.kind, c.detail) for c in updates.changes(old, trending, now)] == [
        ("trending", "now on Hugging Face Daily Papers, ▲ 12 upvotes")]
    replaced = Entry(id=old.id, title="A", links=old.links, new_version=True)
    assert [c.kind for c in updates.changes(old, replaced, now)] == ["version"]
    # an upvote change alone is not news for a reader
    assert updates.changes(trending, Entry(id=old.id, title="A", upvotes=40, links=old.links), now) == []


def test_the_change_log_is_deduplicated_and_bounded(tmp_path: Path) -> None:
    change = records.Change("1", "A", None, "code", "code: https://github.com/a/b", DAY1.isoformat())
    with Store(tmp_path / "s.sqlite3") as store:
        records.add_changes(store, [change, change], DAY1)
        records.add_changes(store, [change], DAY1 + timedelta(hours=1))
        assert records.load_changes(store) == [change]
        later = records.Change("2", "B", None, "code", "code: x", (DAY1 + timedelta(days=40)).isoformat())
        records.add_changes(store, [later], DAY1 + timedelta(days=40))
        assert records.load_changes(store) == [later]
