"""Your digest on the web: /view/<token> shows one sent issue (its papers, as recorded when it was
built), /feed/<token> a subscriber's private Atom feed of their last digests (revoked by rotating
their links). Read-only: both answer GET only."""

from __future__ import annotations

from datetime import datetime, timezone
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.links import LESS, MORE, Links, split
from newsletter.models import Entry
from newsletter.roster import Roster
from newsletter.store_readers import ReaderStore, SentIssue
from newsletter.tokens import Purpose
from newsletter.web.site import Site

ATOM = "http://www.w3.org/2005/Atom"
FEED_ISSUES = 20


def atom(title: str, feed_url: str, issues: list[tuple[SentIssue, list[Entry], str]], now: datetime) -> bytes:
    """An Atom document: one entry per issue, its papers as an XHTML-free text list (escaped by ElementTree)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = title
    ET.SubElement(feed, f"{{{ATOM}}}id").text = feed_url
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=feed_url)
    updated = max((i.sent_at or i.slot for i, _, _ in issues), default=now)
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = updated.astimezone(timezone.utc).isoformat()
    ET.SubElement(ET.SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = title
    for issue, papers, url in issues:
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(item, f"{{{ATOM}}}title").text = issue.subject or title
        ET.SubElement(item, f"{{{ATOM}}}id").text = f"urn:newsletter:issue:{issue.id}"
        ET.SubElement(item, f"{{{ATOM}}}link", rel="alternate", type="text/html", href=url)
        ET.SubElement(item, f"{{{ATOM}}}updated").text = (issue.sent_at or issue.slot).astimezone(timezone.utc).isoformat()
        ET.SubElement(item, f"{{{ATOM}}}summary").text = "\n".join(f"\u2022 {e.title}" for e in papers)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8", xml_declaration=False)


def routes(site: Site) -> list[Route]:
    async def view(request: Request) -> Response:
        issue_id = site.subject(request, Purpose.VIEW)
        if issue_id is None:
            return site.refusal(request)
        config = site.dep.config

        def look(store: ReaderStore) -> tuple[SentIssue, list[Entry], bool] | None:
            issue = store.sent_issue(issue_id)
            if issue is None:
                return None
            return issue, store.issue_entries(issue_id), Roster(config, store).find(issue.subscriber) is not None
        found = await site.in_store(look)
        if found is None:
            return site.refusal(request)
        issue, papers, still_subscribed = found
        links: Links = site.links
        votes = {e.id: (links.feedback(issue.subscriber, e.id, MORE, issue.id),
                        links.feedback(issue.subscriber, e.id, LESS, issue.id)) for e in papers} if still_subscribed else {}
        return site.pages.render(request, "issue", issue=issue, papers=papers, feedback=votes)

    async def feed(request: Request) -> Response:
        subject = site.subject(request, Purpose.FEED)
        parts = split(subject, 2) if subject is not None else None
        if parts is None:
            return site.refusal(request)
        version, email = parts
        config = site.dep.config

        def look(store: ReaderStore) -> list[tuple[SentIssue, list[Entry]]] | None:
            if str(store.link_version(email)) != version or Roster(config, store).find(email) is None:
                return None
            return [(i, store.issue_entries(i.id)) for i in store.sent_issues(email, FEED_ISSUES)]
        found = await site.in_store(look)
        if found is None:
            return site.refusal(request)
        links = site.links
        body = atom(f"{config.settings.title} for {email}", links.feed(email, int(version)),
                    [(i, papers, links.view(i.id)) for i, papers in found], site.clock())
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    return [Route("/view/{token}", view, methods=["GET"]), Route("/feed/{token}", feed, methods=["GET"])]
