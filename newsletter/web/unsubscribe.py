"""The unsubscribe endpoint (RFC 8058 one-click), served by `run` and `serve`.

POST /unsubscribe/<token> unsubscribes at once and answers 200: no cookies and no confirmation, as
RFC 8058 asks, so the signed token in the URL is the whole CSRF protection (it cannot be guessed,
and a page that knows it could POST it anyway). GET shows a page whose button POSTs: a GET never
unsubscribes, as mail scanners fetch links. The app never reads subscribers.yaml: a valid token is
recorded through `unsubscribe(address)` and gets the same answer whether or not the address is on the
list; every invalid token (forged, altered, truncated, another purpose) gets one identical refusal.
If recording fails the client is told at once (503) and the error is logged at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from newsletter.tokens import Purpose, check
from newsletter.web.guard import Guard
from newsletter.web.pages import Pages, no_icon

log = logging.getLogger("newsletter.web")
MAX_BODY = 64 * 1024  # the one-click body is 26 bytes


def unsubscribe_routes(pages: Pages, unsubscribe: Callable[[str], None],
                       secrets: Sequence[str] | Callable[[datetime], Sequence[str]], *, title: str,
                       now: Callable[[], datetime]) -> list[Route]:
    """GET (a page with a button) and POST (one-click) /unsubscribe/<token>. `secrets`: the keys, or
    what gives the keys accepted at a time (old secrets may stop at a date)."""
    fixed = None if callable(secrets) else list(secrets)

    def address(request: Request) -> str | None:
        at = now()
        keys = fixed if fixed is not None else secrets(at)  # type: ignore[operator]
        return check(request.path_params["token"], Purpose.UNSUBSCRIBE, keys, at)

    def invalid(request: Request) -> Response:
        return pages.render(request, "message", 400, heading="This link is not valid",
                            text="This unsubscribe link is not valid. If you keep receiving the digest, "
                                 "reply to it and ask to be removed.")

    async def confirm_page(request: Request) -> Response:
        if address(request) is None:
            return invalid(request)
        return pages.render(request, "unsubscribe", token=request.path_params["token"])

    async def one_click(request: Request) -> Response:
        email = address(request)
        if email is None:
            return invalid(request)
        await request.body()  # read first: an oversized body is refused (413) before anything is recorded
        request.state.unsubscribing = email  # for the error log, should recording fail
        await run_in_threadpool(unsubscribe, email)
        return pages.render(request, "message", heading="You are unsubscribed",
                            text=f"You will not receive {title} any more.")

    return [Route("/unsubscribe/{token}", confirm_page, methods=["GET"]),
            Route("/unsubscribe/{token}", one_click, methods=["POST"])]


def handlers(pages: Pages) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """404/405 pages and the 503 answer (logged) when recording fails, for every reader app."""
    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return pages.render(request, "message", 405, headers=exc.headers, heading="Method not allowed",
                                text="Use the link in the email.")
        return pages.render(request, "message", 404, heading="Not found", text="Nothing here.")

    async def failed(request: Request, exc: Exception) -> Response:
        who = getattr(request.state, "unsubscribing", None)
        what = f"the unsubscribe of {who} was not recorded" if who else f"{request.method} failed"
        log.error("%s: %s: %s", what, type(exc).__name__, exc)
        return pages.render(request, "message", 503, headers={"Retry-After": "600"},
                            heading="Please try again later",
                            text="We could not record this just now. Nothing was changed; "
                                 "please try again in a few minutes.")

    return {404: not_found, 405: not_found, Exception: failed}


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def unsubscribe_app(unsubscribe: Callable[[str], None], secrets: Sequence[str], *, title: str,
                    hosts: Iterable[str], clock: Callable[[], datetime] | None = None) -> ASGIApp:
    """The endpoint alone. `unsubscribe(address)` records it (the caller's one store commit); `secrets`
    verify tokens, the current one first; `hosts` are the Host names answered."""
    pages = Pages(title=title)
    now = clock or (lambda: datetime.now(timezone.utc))
    app = Starlette(routes=[
        Route("/", health), Route("/health", health), Route("/favicon.ico", no_icon),
        *unsubscribe_routes(pages, unsubscribe, secrets, title=title, now=now),
    ], exception_handlers=handlers(pages), max_body_size=MAX_BODY)
    app.router.redirect_slashes = False  # no redirects at all, so none can be open
    return Guard(app, hosts)
