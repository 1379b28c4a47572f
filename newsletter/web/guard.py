"""What every response gets, whatever app is behind it: only our own Host names are answered (a page
that DNS-rebinds its name to 127.0.0.1 is refused), writes come from our own pages or from no page
at all, and strict security headers (a Content-Security-Policy with a fresh style nonce each time).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The name in a Host (or Origin authority) value: `Example.org:8025` -> `example.org`,
    `[::1]:80` -> `::1`; None for anything else (user info, spaces, a path)."""
    m = _HOST.fullmatch(header)
    if not m:
        return None
    return (m["v6"] or m["name"]).lower().rstrip(".") or None


def allowed_hosts(base_url: str | None, bind_host: str) -> frozenset[str]:
    """Loopback, the address we listen on (unless it is every address) and base_url's host name."""
    names = set(LOOPBACK)
    if bind_host not in ("", "0.0.0.0", "::"):
        names.add(bind_host.lower().strip("[]"))
    if base_url and urlsplit(base_url).hostname:
        names.add(str(urlsplit(base_url).hostname).lower().rstrip("."))
    return frozenset(names)


def csp(nonce: str, *, scripts: bool = False) -> str:
    """Pages: nothing runs (`scripts`: only this site's own script files, never inline, which may
    ask this site only), styles only from the nonce'd <style>, forms post only to us, never framed."""
    run = "script-src 'self'; connect-src 'self'; " if scripts else ""
    return (f"default-src 'none'; {run}style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


class Guard:
    """ASGI wrapper: refuses foreign Host headers (400) and cross-site writes (403), and adds the
    security headers to every response that has not chosen its own. `scope["state"]["nonce"]`
    carries this response's style nonce to the page templates."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets, and lifespan is off
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in (("Content-Security-Policy", csp(nonce)), ("X-Frame-Options", "DENY"),
                                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                                    ("Cross-Origin-Opener-Policy", "same-origin"),
                                    ("Cross-Origin-Resource-Policy", "same-origin"),
                                    ("Cache-Control", "no-store")):
                    headers.setdefault(name, value)
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> PlainTextResponse | None:
        headers = Headers(scope=scope)
        if host_name(headers.get("host", "")) not in self.hosts:
            return PlainTextResponse("This server does not answer to that host name.\n", status_code=400)
        if scope["method"] in SAFE_METHODS:
            return None
        # A mail provider's one-click POST comes from no page (no Sec-Fetch-Site, no Origin); our own
        # button is same-origin. Under Referrer-Policy: no-referrer a browser sends `Origin: null`.
        site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        foreign_origin = origin not in (None, "null") and host_name(urlsplit(origin).netloc) not in self.hosts
        if (site is not None and site not in ("same-origin", "none")) or foreign_origin:
            return PlainTextResponse("Forms are accepted only from this site's own pages.\n", status_code=403)
        return None
