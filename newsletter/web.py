"""The unsubscribe endpoint (RFC 8058 one-click), served on a local address by `run` and `serve`.

POST /unsubscribe/<token> unsubscribes at once (no cookies, no confirmation) and answers 200;
GET shows a page whose button POSTs: a GET never unsubscribes, as mail scanners prefetch links.
A forged, altered or truncated token gets exactly the answer an unknown address gets.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from newsletter.tokens import verify

log = logging.getLogger("newsletter.web")
MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 500: "Internal Server Error"}


def _page(status: int, title: str, body: str) -> Response:
    return Response(status, _PAGE.format(title=html.escape(title), body=body))


INVALID = _page(400, "This link is not valid",
                "<p>This unsubscribe link is not valid. If you keep receiving the digest, reply to it "
                "and ask to be removed.</p>")


class UnsubscribeApp:
    """Routes requests; `unsubscribe(address) -> bool` records it (False: no such subscriber)."""

    def __init__(self, secret: str, unsubscribe: Callable[[str], bool], title: str = "Digest") -> None:
        self.secret = secret
        self.unsubscribe = unsubscribe
        self.title = title

    def handle(self, method: str, path: str) -> Response:
        path = unquote(path.split("?", 1)[0])
        if path in ("/", "/health"):
            return Response(200, "ok\n", "text/plain; charset=utf-8")
        if not path.startswith("/unsubscribe/"):
            return _page(404, "Not found", "<p>Nothing here.</p>")
        token = path.removeprefix("/unsubscribe/")
        address = verify(token, self.secret)
        if method == "GET":
            if address is None:
                return INVALID
            return _page(200, f"Unsubscribe from {self.title}",
                         f'<p>Stop sending {html.escape(self.title)} to this address?</p>'
                         f'<form method="post" action="/unsubscribe/{html.escape(token)}">'
                         '<button type="submit">Unsubscribe</button></form>')
        if method != "POST":
            return _page(405, "Method not allowed", "<p>Use the link in the email.</p>")
        if address is None or not self.unsubscribe(address):
            return INVALID
        return _page(200, "You are unsubscribed",
                     f"<p>You will not receive {html.escape(self.title)} any more.</p>")


async def serve_connection(app: UnsubscribeApp, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        if len(head) > MAX_HEADER:
            raise ValueError("header too large")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            response = Response(413, "too large\n", "text/plain")
        else:
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout=10)
            response = await asyncio.get_running_loop().run_in_executor(None, app.handle, method, target)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
        response = Response(400, "bad request\n", "text/plain")
    body = response.body.encode("utf-8")
    writer.write(
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Error')}\r\n"
        f"Content-Type: {response.content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; form-action 'self'\r\n\r\n"
        .encode("latin-1") + body)
    try:
        await writer.drain()
    finally:
        writer.close()


async def start(app: UnsubscribeApp, host: str, port: int) -> asyncio.AbstractServer:
    server = await asyncio.start_server(lambda r, w: serve_connection(app, r, w), host, port)
    log.info("unsubscribe endpoint on http://%s:%d/unsubscribe/<token>", host, port)
    return server
