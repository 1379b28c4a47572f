"""The preference centre: /manage/<token>, a signed link without a password, revoked by rotating
the subscriber's link version. GET shows the profile, the state, the proposals drawn from the
reader's ratings and the private feed; every change is a POST carrying the page's form token.

Edits go through newsletter/editing.py, so a subscriber declared in subscribers.yaml is edited in
the file (comments kept, atomic, validated) and a store-held one in the store; pausing and
unsubscribing are store state for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import editing, feedback, replay, signup
from newsletter.editing import Change
from newsletter.errors import ConfigError, QuerySyntaxError
from newsletter.links import split
from newsletter.models import Subscriber
from newsletter.query import parse
from newsletter.roster import Member, Roster
from newsletter.signup import CADENCES, ProfileForm
from newsletter.store_readers import ReaderStore
from newsletter.tokens import Purpose
from newsletter.web import live
from newsletter.web.site import Site, read_form

FORM = "manage"
READER_PAUSE = editing.READER_PAUSE


def values_of(sub: Subscriber) -> dict[str, str]:
    return {"mode": "keywords" if sub.keywords else "trending", "keywords": "\n".join(sub.keywords),
            "exclude": "\n".join(sub.exclude), "cadence": signup.cadence_of(sub.schedule),
            "timezone": sub.timezone, "max_entries": str(sub.max_entries)}


def changes(sub: Subscriber, fields: Mapping[str, Any]) -> list[Change]:
    """The `set` changes that turn `sub` into the submitted profile (only what differs)."""
    out = []
    for key in ("keywords", "exclude"):
        if tuple(fields.get(key, ())) != tuple(getattr(sub, key)):
            out.append(Change("set", key, tuple(fields.get(key, ()))))
    for key in ("schedule", "timezone", "max_entries"):
        if key in fields and fields[key] != getattr(sub, key):
            out.append(Change("set", key, (str(fields[key]),)))
    return out


def routes(site: Site) -> list[Route]:
    async def member_of(request: Request) -> Member | None:
        subject = site.subject(request, Purpose.MANAGE)
        parts = split(subject, 2) if subject is not None else None
        if parts is None:
            return None
        version, email = parts
        config = site.dep.config

        def look(store: ReaderStore) -> Member | None:
            if str(store.link_version(email)) != version:
                return None  # revoked
            return Roster(config, store).member(email)
        return await site.in_store(look)

    async def page(request: Request, member: Member, *, form: ProfileForm | None = None,
                   values: dict[str, str] | None = None, notice: str = "", problem: str = "",
                   previewed: list[Any] | None = None, status: int = 200) -> Response:
        email = member.subscriber.email
        now = site.clock()

        def gather(store: ReaderStore) -> tuple[Any, ...]:
            ratings = store.ratings(email)
            rated = store.entries_by_id([r.entry_id for r in ratings])
            window = store.entries(since=now - feedback.WINDOW, until=now)
            return ratings, rated, feedback.propose(member.subscriber, ratings, window, rated), \
                store.link_version(email)
        ratings, rated, proposals, version = await site.in_store(gather)
        token = request.path_params["token"]
        return site.pages.render(
            request, "manage", status, email=email, subscriber=member.subscriber, standing=member.standing,
            form=form or ProfileForm(), values=values or values_of(member.subscriber), cadences=list(CADENCES),
            default_zone=member.subscriber.timezone, proposals=proposals, previewed=previewed,
            ratings=[(r, rated.get(r.entry_id)) for r in ratings], notice=notice, problem=problem, token=token,
            feed=site.links.feed(email, version), csrf=site.form_token(FORM, token),
            **live.context(site, prefill_zone=False))

    async def show(request: Request) -> Response:
        member = await member_of(request)
        if member is None:
            return site.refusal(request)
        return await page(request, member)

    async def act(request: Request) -> Response:
        member = await member_of(request)
        if member is None:
            return site.refusal(request)
        data = await read_form(request)
        token = request.path_params["token"]
        if not site.form_ok(data, FORM, token):
            return site.stale(request)
        dep, now, email = site.dep, site.clock(), member.subscriber.email
        action = data.get("action", "")
        if action in ("save", "preview"):
            form = signup.read_profile(data, dep.config.settings, with_address=False)
            if not form.ok:
                return await page(request, member, form=form, values=data, status=400)
            if action == "preview":
                shown = await site.in_store(lambda s: signup.preview(signup.recent(s, now), form.fields))
                return await page(request, member, form=form, values=data, previewed=shown)
            todo = changes(member.subscriber, form.fields)
            if not todo:
                return await page(request, member, notice="Nothing to change.")
            effect = ""
            if any(c.key in ("keywords", "exclude") for c in todo):  # replayed before it is saved
                replayed = await run_in_threadpool(editing.replay_changes, dep, email, todo,
                                                   now - timedelta(days=replay.WINDOW_DAYS))
                effect = (f" Over the last {replay.WINDOW_DAYS} days it would have brought {len(replayed.added)} "
                          f"more paper{'s' if len(replayed.added) != 1 else ''} and {len(replayed.removed)} fewer.")
            problem = await edit(member, todo)
            if problem:
                return await page(request, member, values=data, problem=problem, status=400)
            return await page(request, await member_of(request) or member,
                              notice="Saved. Your next digest follows the new profile." + effect)
        if action == "apply":
            kind, query = data.get("kind", ""), data.get("query", "")
            try:
                parse(query)
            except QuerySyntaxError:
                return await page(request, member, problem="That change is not valid any more.", status=400)
            if kind not in ("exclude", "keywords"):
                return await page(request, member, problem="That change is not valid any more.", status=400)
            problem = await edit(member, [Change("add", kind, (query,))])
            if problem:
                return await page(request, member, problem=problem, status=400)
            await site.in_store(ReaderStore.forget_rating, email, data.get("entry", ""))
            return await page(request, await member_of(request) or member,
                              notice=f"Applied: {'never send' if kind == 'exclude' else 'also send'} papers "
                                     f"matching {query}.")
        if action == "dismiss":
            await site.in_store(ReaderStore.forget_rating, email, data.get("entry", ""))
            return await page(request, member, notice="Rating dismissed.")
        if action == "pause":
            raw = data.get("until", "").strip()
            try:
                until = date.fromisoformat(raw) if raw else None
            except ValueError:
                return await page(request, member, problem="Not paused: give the date as YYYY-MM-DD.", status=400)
            try:
                await run_in_threadpool(editing.pause, dep, site.env, email, now, on=True, until=until,
                                        by_reader=True)
            except ConfigError as exc:
                return await page(request, member, problem=f"Not paused: {exc}", status=400)
            notice = (f"Paused until {until:%Y-%m-%d}: then one digest catches up on what you missed." if until
                      else "Paused: nothing is sent until you resume.")
            return await page(request, await member_of(request) or member, notice=notice)
        if action == "resume" and member.standing.state in ("paused", "bounced"):
            await run_in_threadpool(editing.pause, dep, site.env, email, now, on=False)
            return await page(request, await member_of(request) or member, notice="Resumed.")
        if action == "rotate":
            version = await site.in_store(ReaderStore.rotate_links, email)
            return site.pages.render(request, "message", heading="New links made",
                                     text="Your earlier preference and feed links no longer work. Bookmark the "
                                          "new one:", link=site.links.manage(email, version))
        if action == "unsubscribe":
            await run_in_threadpool(dep.unsubscribe, email, now)
            return site.pages.render(request, "message", heading="You are unsubscribed",
                                     text=f"You will not receive {dep.config.settings.title} any more. To come "
                                          "back, sign up again: that needs a new confirmation.")
        return await page(request, member, problem="Unknown action.", status=400)

    async def edit(member: Member, todo: list[Change]) -> str:
        """Apply the changes where the subscriber lives; the problem, or "" when saved."""
        try:
            await run_in_threadpool(editing.set_fields, site.dep, site.env, member.subscriber.email, todo)
        except ConfigError as exc:
            return f"Not saved: {exc}"
        return ""

    return [Route("/manage/{token}", show, methods=["GET"]), Route("/manage/{token}", act, methods=["POST"])]
