"""Sign-up with double opt-in: /subscribe (the form, its preview, "check your inbox") and
/confirm/<token> (a page whose button confirms: a GET confirms nothing, as mail scanners fetch links).
The rules are newsletter/signup.py's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import signup
from newsletter.links import split
from newsletter.signup import CADENCES, ProfileForm
from newsletter.store_readers import ReaderStore
from newsletter.tokens import Purpose
from newsletter.web import live
from newsletter.web.site import Site, client_address, read_form

FORM = "subscribe"


def routes(site: Site) -> list[Route]:
    def closed(request: Request) -> Response:
        return site.pages.render(request, "message", 404, heading="Sign-up is closed",
                                 text="This newsletter does not take sign-ups on the web.")

    def form_page(request: Request, form: ProfileForm, values: dict[str, str], status: int = 200,
                  previewed: list[Any] | None = None) -> Response:
        settings = site.dep.config.settings
        return site.pages.render(request, "subscribe", status, form=form, values=values, cadences=list(CADENCES),
                                 previewed=previewed, csrf=site.form_token(FORM, FORM),
                                 domains=site.policy.domains, default_zone=settings.timezone,
                                 **live.context(site, prefill_zone=not values.get("timezone")))

    async def show(request: Request) -> Response:
        if not site.policy.enabled:
            return closed(request)
        return form_page(request, ProfileForm(), {"mode": "keywords", "cadence": "daily"})

    async def submit(request: Request) -> Response:
        if not site.policy.enabled:
            return closed(request)
        data = await read_form(request)
        if not site.form_ok(data, FORM, FORM):
            return site.stale(request)
        settings = site.dep.config.settings
        form = signup.read_profile(data, settings, with_address=True)
        if "email" in form.fields and not site.policy.allows(form.fields["email"]):
            form.errors["email"] = f"sign-ups are open to addresses at {', '.join(site.policy.domains)} only"
        if data.get("action") == "preview":
            now = site.clock()
            shown = None
            if "keywords" not in form.errors and "exclude" not in form.errors:
                shown = await site.in_store(lambda s: signup.preview(signup.recent(s, now), form.fields))
            return form_page(request, form, data, previewed=shown)
        if not form.ok:
            return form_page(request, form, data, 400)
        email = form.fields["email"]
        now = site.clock()

        def record(store: ReaderStore) -> signup.Notice | None:
            manage = site.links.manage(email, store.link_version(email))
            return signup.request(store, site.dep.config, site.policy, site.links, form.fields,
                                  client_address(request), now, manage)

        notice = await site.in_store(record)
        return site.pages.render(request, "message", heading="Check your inbox",
                                 text=f"If {email} can receive {settings.title}, a mail with a link is on its "
                                      "way. Open it and press the button to confirm. Nothing is sent until you do.",
                                 background=site.deliver_after(notice))

    def parts(request: Request) -> list[str] | None:
        subject = site.subject(request, Purpose.CONFIRM)
        return split(subject, 2) if subject is not None else None

    async def confirm_page(request: Request) -> Response:
        got = parts(request)
        if got is None or await site.in_store(signup.pending, got[0], got[1], site.clock()) is None:
            return site.refusal(request)
        token = request.path_params["token"]
        return site.pages.render(request, "confirm", token=token, email=got[0],
                                 csrf=site.form_token("confirm", token))

    async def confirm(request: Request) -> Response:
        got = parts(request)
        if got is None:
            return site.refusal(request)
        if not site.form_ok(await read_form(request), "confirm", request.path_params["token"]):
            return site.stale(request)
        email, nonce = got
        dep = site.dep
        done = await site.in_store(signup.confirm, dep.config, email, nonce, site.clock(), site.env)
        if not done:
            return site.refusal(request)
        manage = site.links.manage(email, await site.in_store(ReaderStore.link_version, email))
        if site.on_confirmed is not None:
            site.on_confirmed(email)
        return site.pages.render(request, "confirmed", email=email, manage=manage)

    return [
        Route("/subscribe", show, methods=["GET"]),
        Route("/subscribe", submit, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
    ]
