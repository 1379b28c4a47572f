"""`newsletter preview --serve`: a local workbench showing exactly what each subscriber would get.

Serves on 127.0.0.1 only. Every request renders from an in-memory copy of the state (ingest
included), so nothing is ever sent or recorded. The page polls api/version, a fingerprint of the
templates, the subscribers file and the state file, and reloads itself when any of them changes.

It shows every address on the list and raw messages, so it answers only loopback Host names (a
page that DNS-rebinds its own name to 127.0.0.1 is refused) and only under a per-run key in the
path; its links are signed with a per-run preview secret, never NEWSLETTER_SECRET, so a preview's
unsubscribe link does nothing against the real service; the email is shown in a sandboxed frame.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from newsletter import explain as explainlib
from newsletter import ingest, pipeline, web
from newsletter.addresses import normalise_address
from newsletter.config import load
from newsletter.errors import NewsletterError
from newsletter.preview import GMAIL_CLIP_BYTES
from newsletter.rendering import default_templates, environment
from newsletter.store import Location, Store
from newsletter.web.pages import no_icon

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
    def __init__(self, config_path: Path, state_path: Location, env: dict[str, str], *, at: datetime | None,
                 fetch: bool, preview_secret: str | None = None) -> None:
        self.config_path = config_path
        self.state_path = state_path
        self.env = env
        self.at = at
        self.fetch = fetch
        # signs the preview's links: a token made with it is refused by `serve` and `run`
        self.preview_secret = preview_secret or secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._cache: tuple[str, dict[str, Any]] | None = None
        self._templates: Path | None = None

    def _watched(self) -> list[Path]:
        state = self.state_path
        paths = [self.config_path] + ([state, state.with_name(state.name + "-wal")] if isinstance(state, Path) else [])
        # the user's template folder as of the last render: polling must not re-read the YAML
        folders = [default_templates()] + ([self._templates] if self._templates else [])
        for folder in folders:
            paths.extend(sorted(folder.glob("*.j2")) + sorted(folder.glob("catalogue/*.json")))
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
            planned, skipped = pipeline.plan(config, store, now, secret=self.preview_secret, upcoming=True)
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

    def _find(self, email: str) -> Rendered | None:
        """The subscriber's issue, whatever the case of the address asked for."""
        issues: dict[str, Rendered] = self.state()["issues"]
        wanted = normalise_address(email)
        return next((r for e, r in issues.items() if normalise_address(e) == wanted), None)

    def issue(self, email: str) -> dict[str, Any] | None:
        found = self._find(email)
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

    def explain(self, paper: str) -> dict[str, Any]:
        """"Why not this paper?": each subscriber's reason, this preview's issues counted as built now."""
        if not paper.strip():
            return {"error": "type an arXiv id, a paper URL or words of a title"}
        try:
            config = load(self.config_path, self.env)
            now = self.at or datetime.now(timezone.utc)
            store = Store.snapshot(self.state_path)
            try:
                if self.fetch:
                    ingest.ingest_sources(store, config, now)
                built, _ = pipeline.plan(config, store, now, secret=self.preview_secret, upcoming=True)
                planned = dict(explainlib.planned_row(b.to_record()) for b in built)
                found, reasons = explainlib.explain(store, config, paper,
                                                    planned={row.subscriber: (row, ids) for row, ids in planned.items()})
                rows = [r.as_dict() for r in reasons]
            finally:
                store.close()
        except NewsletterError as exc:
            return {"error": str(exc)}
        return {"paper": {"id": found.id, "title": " ".join(found.title.split())}, "reasons": rows}

    def email_html(self, email: str, theme: str) -> str | None:
        found = self._find(email)
        if found is None or found.html is None:
            return None
        if theme == "dark":  # show the dark stylesheet whatever the viewer's own setting
            return _DARK_MEDIA.sub("@media all", found.html)
        if theme == "light":
            return _DARK_MEDIA.sub("@media not all", found.html)
        return found.html


PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-src 'self'; "
            "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
# The email runs nothing, reaches nothing of ours, and may only be framed by the workbench itself.
EMAIL_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; "
             "img-src https: http: data:; frame-ancestors 'self'")
_STATIC = {"workbench.js": "text/javascript; charset=utf-8", "workbench.css": "text/css; charset=utf-8"}


def app(bench: Workbench, key: str) -> ASGIApp:
    """The workbench under /<key>/, answering loopback Host names only."""
    page = environment(None).get_template("workbench.html.j2").render()
    static = {name: ((default_templates() / "static" / name).read_bytes(), ctype) for name, ctype in _STATIC.items()}

    def keyed(endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def checked(request: Request) -> Response:
            if not hmac.compare_digest(request.path_params["key"].encode(), key.encode()):
                return _unknown(request)
            return endpoint(request)
        return checked

    def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    def asset(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return _unknown(request)
        return Response(found[0], media_type=found[1])

    def version(request: Request) -> Response:
        return JSONResponse({"version": bench.version()})

    def state(request: Request) -> Response:
        return JSONResponse({k: v for k, v in bench.state().items() if k != "issues"})

    def issue(request: Request) -> Response:
        found = bench.issue(request.path_params["email"])
        return JSONResponse(found if found else {"error": "no such subscriber"}, 200 if found else 404)

    def why(request: Request) -> Response:
        found = bench.explain(request.query_params.get("paper", "")[:500])
        return JSONResponse(found)  # "no such paper" is an answer, not a failed request

    def email(request: Request) -> Response:
        html = bench.email_html(request.path_params["email"], request.query_params.get("theme", "auto"))
        if html is None:
            return PlainTextResponse("nothing to send for this subscriber", 404)
        return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN"})

    routes = [Route("/favicon.ico", no_icon), Route("/{key}/", keyed(index)), Route("/{key}/{name}", keyed(asset)),
              Route("/{key}/api/version", keyed(version)), Route("/{key}/api/state", keyed(state)),
              Route("/{key}/api/issue/{email:path}", keyed(issue)), Route("/{key}/api/explain", keyed(why)),
              Route("/{key}/email/{email:path}", keyed(email))]
    starlette = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found}, max_body_size=0)
    starlette.router.redirect_slashes = False
    return web.Guard(starlette, web.LOOPBACK)


def _unknown(request: Request) -> Response:
    return PlainTextResponse("Not found. Open the address `newsletter preview --serve` printed: "
                             "it holds this run's key.\n", 404)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _unknown(request)


async def serve(bench: Workbench, port: int, ready: Callable[[str], None]) -> None:
    """Serve on 127.0.0.1:port until SIGINT/SIGTERM; `ready(url)` gets the address with this run's key."""
    key = secrets.token_urlsafe(24)
    running = await web.start(app(bench, key), "127.0.0.1", port)
    ready(f"http://127.0.0.1:{running.port}/{key}/")
    await web.until_signal()
    await running.stop()
