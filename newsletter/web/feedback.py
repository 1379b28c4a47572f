""""More / less like this": /feedback/<token> names a verdict, a subscriber and a paper. A GET shows
what will be recorded; only the page's POST records it (mail scanners fetch every link). The
preference centre turns the ratings into proposals (newsletter/feedback.py)."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.links import LESS, MORE, split
from newsletter.models import Entry
from newsletter.roster import Roster
from newsletter.store_readers import Rating, ReaderStore
from newsletter.tokens import Purpose
from newsletter.web.site import Site, read_form

FORM = "feedback"


def routes(site: Site) -> list[Route]:
    async def rated(request: Request) -> tuple[int, str, Entry, str] | None:
        subject = site.subject(request, Purpose.FEEDBACK)
        parts = split(subject, 4) if subject is not None else None
        if parts is None or parts[0] not in (str(MORE), str(LESS)):
            return None
        verdict, email, entry_id, issue_id = int(parts[0]), parts[1], parts[2], parts[3]
        config = site.dep.config

        def look(store: ReaderStore) -> Entry | None:
            if Roster(config, store).find(email) is None:
                return None
            return store.entries_by_id([entry_id]).get(entry_id)
        paper = await site.in_store(look)
        return (verdict, email, paper, issue_id) if paper is not None else None

    async def show(request: Request) -> Response:
        got = await rated(request)
        if got is None:
            return site.refusal(request)
        token = request.path_params["token"]
        return site.pages.render(request, "feedback", paper=got[2], more=got[0] == MORE, token=token,
                                 csrf=site.form_token(FORM, token))

    async def record(request: Request) -> Response:
        got = await rated(request)
        if got is None:
            return site.refusal(request)
        if not site.form_ok(await read_form(request), FORM, request.path_params["token"]):
            return site.stale(request)
        verdict, email, paper, issue_id = got
        now: datetime = site.clock()
        await site.in_store(ReaderStore.rate, Rating(email, paper.id, issue_id or None, verdict, now))
        version = await site.in_store(ReaderStore.link_version, email)
        return site.pages.render(request, "message", heading="Thank you",
                                 text=f"Recorded: {'more' if verdict == MORE else 'less'} like \u201c{paper.title}\u201d. "
                                      "Your preference page now suggests a change to your profile, with its effect.",
                                 link=site.links.manage(email, version), link_text="See the suggested change")

    return [Route("/feedback/{token}", show, methods=["GET"]), Route("/feedback/{token}", record, methods=["POST"])]
