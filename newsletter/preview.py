"""Previews: the issue each subscriber would get now, written as files. Never touches delivery state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter import pipeline
from newsletter.builder import Built
from newsletter.models import Config
from newsletter.rendering import environment
from newsletter.store import Store

GMAIL_CLIP_BYTES = 102 * 1024


@dataclass(frozen=True)
class PreviewRow:
    email: str
    name: str | None
    entries: int
    subject: str | None
    size: int | None
    reason: str
    base: str | None

    @property
    def over(self) -> bool:
        return self.size is not None and self.size > GMAIL_CLIP_BYTES


def file_stem(email: str) -> str:
    """A safe file name for an address: ada@example.org -> ada@example.org."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", email)


def build_rows(config: Config, store: Store, now: datetime, only: str | None,
               secret: str | None) -> tuple[list[PreviewRow], list[Built]]:
    planned, skipped = pipeline.plan(config, store, now, only=only, secret=secret, upcoming=True)
    rows = []
    for p in planned:
        size = len(p.rendered.html.encode()) if p.rendered else None
        rows.append(PreviewRow(p.subscriber.email, p.subscriber.name, len(p.issue.matches),
                               p.rendered.subject if p.rendered else None, size, p.reason,
                               file_stem(p.subscriber.email) if p.rendered else None))
    for s in skipped:
        rows.append(PreviewRow(s.subscriber.email, s.subscriber.name, 0, None, None, s.reason, None))
    order = {s.email: i for i, s in enumerate(config.subscribers)}
    rows.sort(key=lambda r: order.get(r.email, 0))
    return rows, planned


def write(config: Config, store: Store, now: datetime, out: Path, *, only: str | None = None,
          secret: str | None = None) -> list[PreviewRow]:
    rows, planned = build_rows(config, store, now, only, secret)
    out.mkdir(parents=True, exist_ok=True)
    for p in planned:
        if p.rendered is None or p.message is None:
            continue
        stem = file_stem(p.subscriber.email)
        (out / f"{stem}.html").write_text(p.rendered.html, encoding="utf-8")
        (out / f"{stem}.txt").write_text(p.rendered.text, encoding="utf-8")
        (out / f"{stem}.eml").write_bytes(p.message)
    index = environment(None).get_template("preview_index.html.j2").render(
        title=config.settings.title, at=f"{now:%Y-%m-%d %H:%M} UTC", rows=rows)
    (out / "index.html").write_text(index, encoding="utf-8")
    return rows
