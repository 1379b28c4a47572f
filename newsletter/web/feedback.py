""""More / less like this". A digest's links are /rate/<token>/<more|less>/<paper id>, the token
naming a subscriber and one issue (the paper must be one that issue carried); /feedback/<token>
names a verdict, a subscriber and a paper in the token itself. A GET shows what will be recorded;
only the page's POST records it (mail scanners fetch every link). The preference centre turns the
ratings into proposals (newsletter/feedback.py)."""

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
VERDICTS = {"more": MORE, "less": LESS}


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

    async def rated_in_issue(request: Request) -> tuple[int, str, Entry, str] | None:
        subject = site.subject(request, Purpose.FEEDBACK)
        parts = split(subject, 2) if subject is not None else None
        verdict = VERDICTS.get(request.path_params["verdict"])
        if parts is None or verdict is None:
            return None
        email, issue_id = parts
        entry_id = request.path_params["entry"]
        config = site.dep.config

        def look(store: ReaderStore) -> Entry | None:
            issue = store.issue(issue_id)
            if issue is None or issue.subscriber != email or Roster(config, store).find(email) is None:
                return None
            return next((e for e in store.issue_entries(issue_id) if e.id == entry_id), None)
        paper = await site.in_store(look)
        return (verdict, email, paper, issue_id) if paper is not None else None

    def page(request: Request) -> str:
        """What the page's form is bound to: the whole link (its token alone for /feedback/)."""
        params = request.path_params
        return "/".join((params["token"], params["verdict"], params["entry"])) if "entry" in params else params["token"]

    async def found(request: Request) -> tuple[int, str, Entry, str] | None:
        return await (rated_in_issue(request) if "entry" in request.path_params else rated(request))

    async def show(request: Request) -> Response:
        got = await found(request)
        if got is None:
            return site.refusal(request)
        # the form posts to this very URL ("" is the page's own address, whatever the paper id holds)
        action = request.path_params["token"] if "entry" not in request.path_params else ""
        return site.pages.render(request, "feedback", paper=got[2], more=got[0] == MORE, action=action,
                                 csrf=site.form_token(FORM, page(request)))

    async def record(request: Request) -> Response:
        got = await found(request)
        if got is None:
            return site.refusal(request)
        if not site.form_ok(await read_form(request), FORM, page(request)):
            return site.stale(request)
        verdict, email, paper, issue_id = got
        now: datetime = site.clock()
        await site.in_store(ReaderStore.rate, Rating(email, paper.id, issue_id or None, verdict, now))
        version = await site.in_store(ReaderStore.link_version, email)
        return site.pages.render(request, "message", heading="Thank you",
                                 text=f"Recorded: {'more' if verdict == MORE else 'less'} like \u201c{paper.title}\u201d. "
                                      "Your preference page now suggests a change to your profile, with its effect.",
                                 link=site.links.manage(email, version), link_text="See the suggested change")

    return [Route("/feedback/{token}", show, methods=["GET"]), Route("/feedback/{token}", record, methods=["POST"]),
            Route("/rate/{token}/{verdict}/{entry:path}", show, methods=["GET"]),
            Route("/rate/{token}/{verdict}/{entry:path}", record, methods=["POST"])]
