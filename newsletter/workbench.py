"""`newsletter preview --serve`: a local workbench showing exactly what each subscriber would get.

Serves on 127.0.0.1 only. Every request renders from an in-memory copy of the state (ingest
included), so nothing is ever sent or recorded. The page polls /api/version, a fingerprint of the
templates, the subscribers file and the state file, and reloads itself when any of them changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from newsletter import ingest, pipeline
from newsletter.config import load
from newsletter.errors import NewsletterError
from newsletter.preview import GMAIL_CLIP_BYTES
from newsletter.rendering import default_templates, environment
from newsletter.store import Store

log = logging.getLogger("newsletter.workbench")
_DARK_MEDIA = re.compile(r"@media\s*\(prefers-color-scheme:\s*dark\)")
_LINK = re.compile(r'<a\s[^>]*href="([^"]+)"[^>]*>(.*?)</a>', re.S)
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Rendered:
    email: str
    name: str | None
    entries: int
    subject: str | None
    reason: str
    html: str | None
    text: str | None
    raw: bytes | None


class Workbench:
    def __init__(self, config_path: Path, state_path: Path, env: dict[str, str], *, at: datetime | None,
                 fetch: bool) -> None:
        self.config_path = config_path
        self.state_path = state_path
        self.env = env
        self.at = at
        self.fetch = fetch
        self._lock = threading.Lock()
        self._cache: tuple[str, dict[str, Any]] | None = None
        self._templates: Path | None = None

    def _watched(self) -> list[Path]:
        paths = [self.config_path, self.state_path, self.state_path.with_name(self.state_path.name + "-wal")]
        # the user's template folder as of the last render: polling must not re-read the YAML
        folders = [default_templates()] + ([self._templates] if self._templates else [])
        for folder in folders:
            paths.extend(sorted(folder.glob("*.j2")))
        return paths

    def version(self) -> str:
        h = hashlib.sha256()
        for path in self._watched():
            try:
                st = path.stat()
                h.update(f"{path}:{st.st_mtime_ns}:{st.st_size};".encode())
            except FileNotFoundError:
                h.update(f"{path}:-;".encode())
        return h.hexdigest()[:16]

    def state(self) -> dict[str, Any]:
        """Everything the page shows, rendered once per version."""
        with self._lock:
            version = self.version()
            if self._cache and self._cache[0] == version:
                return self._cache[1]
            try:
                data = self._render(version)
            except NewsletterError as exc:
                data = {"version": version, "error": str(exc), "subscribers": [], "issues": {}}
            # a render may have found the user's template folder: key the cache by what is watched now
            data["version"] = version = self.version()
            self._cache = (version, data)
            return data

    def _render(self, version: str) -> dict[str, Any]:
        config = load(self.config_path, self.env)
        self._templates = config.settings.templates
        now = self.at or datetime.now(timezone.utc)
        store = Store.snapshot(self.state_path)
        try:
            errors = []
            if self.fetch:
                errors = [r.error for r in ingest.ingest_sources(store, config, now) if r.error]
            planned, skipped = pipeline.plan(config, store, now, secret=self.env.get("NEWSLETTER_SECRET"),
                                             upcoming=True)
        finally:
            store.close()
        issues: dict[str, Rendered] = {}
        for p in planned:
            issues[p.subscriber.email] = Rendered(
                p.subscriber.email, p.subscriber.name, len(p.issue.matches),
                p.rendered.subject if p.rendered else None, p.reason,
                p.rendered.html if p.rendered else None, p.rendered.text if p.rendered else None, p.message)
        for s in skipped:
            issues[s.subscriber.email] = Rendered(s.subscriber.email, s.subscriber.name, 0, None, s.reason,
                                                  None, None, None)
        order = [s.email for s in config.subscribers if s.email in issues]
        rows = [{"email": i.email, "name": i.name, "entries": i.entries, "subject": i.subject,
                 "reason": i.reason, "size": len(i.html.encode()) if i.html else None}
                for i in (issues[e] for e in order)]
        return {"version": version, "title": config.settings.title, "at": f"{now:%Y-%m-%d %H:%M} UTC",
                "limit": GMAIL_CLIP_BYTES, "subscribers": rows, "source_errors": errors, "issues": issues}

    def issue(self, email: str) -> dict[str, Any] | None:
        data = self.state()
        found: Rendered | None = data["issues"].get(email)
        if found is None:
            return None
        out: dict[str, Any] = {"email": found.email, "subject": found.subject, "reason": found.reason,
                               "entries": found.entries, "text": found.text, "size": None,
                               "headers": "", "raw": "", "links": []}
        if found.html is not None and found.raw is not None:
            msg = message_from_bytes(found.raw, policy=policy.default)
            out["size"] = len(found.html.encode())
            out["headers"] = "\n".join(f"{k}: {v}" for k, v in msg.items())
            out["raw"] = found.raw.decode("utf-8", "replace")
            out["links"] = [{"href": href, "text": _TAG.sub("", label).strip()}
                            for href, label in _LINK.findall(found.html)]
        return out

    def email_html(self, email: str, theme: str) -> str | None:
        found: Rendered | None = self.state()["issues"].get(email)
        if found is None or found.html is None:
            return None
        if theme == "dark":  # show the dark stylesheet whatever the viewer's own setting
            return _DARK_MEDIA.sub("@media all", found.html)
        if theme == "light":
            return _DARK_MEDIA.sub("@media not all", found.html)
        return found.html


def _page() -> str:
    env = environment(None)
    return env.get_template("workbench.html.j2").render()


class _Handler(BaseHTTPRequestHandler):
    bench: Workbench
    page: str

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path == "/":
            self._send(200, self.page.encode(), "text/html; charset=utf-8")
        elif path == "/api/version":
            self._json({"version": self.bench.version()})
        elif path == "/api/state":
            data = self.bench.state()
            self._json({k: v for k, v in data.items() if k != "issues"})
        elif path.startswith("/api/issue/"):
            found = self.bench.issue(path.removeprefix("/api/issue/"))
            self._json(found if found else {"error": "no such subscriber"}, 200 if found else 404)
        elif path.startswith("/email/"):
            html = self.bench.email_html(path.removeprefix("/email/"), query.get("theme", ["auto"])[0])
            if html is None:
                self._send(404, b"nothing to send for this subscriber", "text/plain; charset=utf-8")
            else:
                self._send(200, html.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain; charset=utf-8")


def make_server(bench: Workbench, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"bench": bench, "page": _page()})
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
