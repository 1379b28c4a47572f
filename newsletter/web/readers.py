"""The reader-facing app served by `run` and `serve`: unsubscribe, sign-up and confirmation, the
preference centre, "more / less like this", the web view of an issue and the private Atom feed,
all behind one Guard (Host names, same-origin writes, strict headers) with bounded bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from newsletter.deployment import Deployment
from newsletter.signup import Policy
from newsletter.web import archive, feedback, live, manage, signup
from newsletter.web.guard import Guard
from newsletter.web.pages import Pages, no_icon
from newsletter.web.site import Site
from newsletter.web.unsubscribe import MAX_BODY, handlers, health, unsubscribe_routes


def readers_app(deployment: Callable[[], Deployment], env: Mapping[str, str], *, hosts: Iterable[str],
                clock: Callable[[], datetime], unsubscribe: Callable[[str], None],
                on_confirmed: Callable[[str], None] | None = None, policy: Policy | None = None) -> ASGIApp:
    """`deployment()` is asked on every request (the service swaps it when subscribers.yaml changes);
    `unsubscribe(address)` records a one-click unsubscribe; `on_confirmed(address)` runs after a
    confirmation (the service sends the first digest)."""
    dep = deployment()
    settings = dep.config.settings
    pages = Pages(settings.templates, title=settings.title)
    site = Site(deployment, env, clock, policy or Policy.from_settings(settings), pages, on_confirmed)
    app = Starlette(routes=[
        Route("/", health), Route("/health", health), Route("/favicon.ico", no_icon),
        *unsubscribe_routes(pages, unsubscribe, dep.secrets.verifying_at, title=settings.title, now=clock),
        *signup.routes(site), *manage.routes(site), *feedback.routes(site), *archive.routes(site),
        *live.routes(site),
    ], exception_handlers=handlers(pages), max_body_size=MAX_BODY)
    app.router.redirect_slashes = False  # no redirects at all, so none can be open
    return Guard(app, hosts)
