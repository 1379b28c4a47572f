"""One issue -> its rendered digest and message bytes: the subscriber's links (unsubscribe; with a
web service the preference centre, the issue on the web and the rating prefix), the slot's shared
renderer, the MIME message, and the DKIM signature. What `builder.py` does per subscriber, and what
`bench/render.py` times.
"""

from __future__ import annotations

from typing import Any

from newsletter import message as messagelib
from newsletter.errors import ConfigError
from newsletter.links import Links
from newsletter.models import Issue, RenderedIssue, Settings
from newsletter.rendering import HTML_BUDGET, environment, render

CARDS_KEPT = 20_000  # rendered cards kept across batches; past this the renderer forgets them ...
PARTS_KEPT = 60_000  # ... and the parts they are made of too, past this many (~60 MB per worker on
#                      bench/end_to_end's workload, ~90 MB with the encoded form each part keeps: one
#                      worker's share of 100,000 subscribers built in one process peaks at ~420 MB)


class Composer:
    """Writes the messages of one slot with one configuration and link secret."""

    def __init__(self, settings: Settings, *, link_secret: str, dkim_key: bytes | None = None) -> None:
        if settings.dkim is not None and not dkim_key:
            raise ConfigError("newsletter.dkim is set but NEWSLETTER_DKIM_KEY_FILE is not: point it at the "
                              "PEM private key of the selector")
        self.settings = settings
        self.link_secret = link_secret
        self.dkim_key = dkim_key
        self.env = environment(settings.templates)
        base = settings.base_url
        self.web = Links(base.rstrip("/"), link_secret) if base and link_secret else None
        self._cache: dict[Any, Any] = {}  # the slot renderer: cards, frames and plans shared by the batches

    def forget(self) -> None:
        """Start afresh (another window of papers)."""
        self._cache.clear()

    def bound(self) -> None:
        """Keep memory bounded whatever the number of subscribers: past CARDS_KEPT cards, the slot
        renderer forgets its cards, and their parts past PARTS_KEPT (its frames and plans stay)."""
        for r in self._cache.values():
            if getattr(r, "card_count", 0) > CARDS_KEPT:
                r.trim(PARTS_KEPT)

    def __call__(self, issue: Issue, link_version: int = 0) -> tuple[RenderedIssue, bytes]:
        settings = self.settings
        email = issue.subscriber.email
        links = messagelib.unsubscribe_links(settings, email, self.link_secret)
        web = self.web
        if web is None:  # no web service: the profile is changed by writing to the sender
            change, view, rate = messagelib.change_profile_url(settings, email), "", ""
        else:
            change, view, rate = web.manage(email, link_version), web.view(issue.id), web.rating(email, issue.id)
        rendered = render(issue, settings, unsubscribe_url=links.visible, change_url=change, view_url=view,
                          rate_url=rate, env=self.env, cache=self._cache, budget=HTML_BUDGET)
        msg = messagelib.to_bytes(messagelib.build(rendered, settings, issue.subscriber, links, issue.built_at))
        if settings.dkim is not None:
            from dkim import DKIMException

            assert self.dkim_key is not None
            try:
                msg = messagelib.dkim_sign(msg, settings.dkim.domain, settings.dkim.selector, self.dkim_key)
            except DKIMException as exc:
                raise ConfigError(f"DKIM signing failed ({type(exc).__name__}: {exc}); check the key") from exc
        return rendered, msg
