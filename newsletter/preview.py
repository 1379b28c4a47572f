"""Previews: the issue each subscriber would get now, written as files. Never touches delivery state.

The files hold working links (with their tokens) and every address: they are written readable by
their owner only (0600, in a 0700 folder when we create it).
"""

from __future__ import annotations

import hashlib
import os
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
    """A safe file name for an address, one per address: ada@example.org -> ada@example.org, and when
    characters had to be replaced a hash of the address keeps names apart (jörg@ and jürg@ would
    both be j_rg@): jörg@example.org -> j_rg@example.org~90eb4897ed2f."""
    stem = re.sub(r"[^A-Za-z0-9._@+-]", "_", email)
    if stem == email:
        return stem
    return f"{stem}~{hashlib.sha256(email.encode()).hexdigest()[:12]}"  # "~" is never in a plain stem


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` as mode 0600, whatever the umask and whatever mode the file had."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its old mode through O_CREAT
        f.write(data)


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
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
    for p in planned:
        if p.rendered is None or p.message is None:
            continue
        stem = file_stem(p.subscriber.email)
        _write_private(out / f"{stem}.html", p.rendered.html.encode("utf-8"))
        _write_private(out / f"{stem}.txt", p.rendered.text.encode("utf-8"))
        _write_private(out / f"{stem}.eml", p.message)
    index = environment(None).get_template("preview_index.html.j2").render(
        title=config.settings.title, at=f"{now:%Y-%m-%d %H:%M} UTC", rows=rows)
    _write_private(out / "index.html", index.encode("utf-8"))
    return rows
