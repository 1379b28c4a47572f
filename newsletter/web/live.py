"""The live preview of the sign-up and preference forms: POST /preview (a small JSON answer: what
the last 7 days would have brought for the typed profile, or the queries' errors with their column)
and /static/readers.js, the one script the pages load (the CSP allows scripts from this site only,
never inline). The script also fills the time zone in from the browser. Nothing is recorded."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter import signup
from newsletter.signup import PREVIEW_DAYS, PREVIEW_SHOWN
from newsletter.rendering import default_templates
from newsletter.web.site import Site, read_form

FORM = "preview"  # one form token for the preview of either page: it shows public papers only
SCRIPT = "readers.js"
QUERY_FIELDS = ("keywords", "exclude")


def root(site: Site) -> str:
    """The path the proxy serves us under (from base_url), for root-relative URLs in the pages."""
    return urlsplit(site.dep.config.settings.base_url or "").path.rstrip("/")


def context(site: Site, *, prefill_zone: bool) -> dict[str, Any]:
    """What profile_fields.html.j2 needs for the live preview and the time zone (and `scripts` for
    Pages.render: this page's CSP lets it load the script)."""
    return {"live_url": f"{root(site)}/preview", "live_token": site.form_token(FORM, FORM),
            "script_url": f"{root(site)}/static/{SCRIPT}", "prefill_zone": prefill_zone, "scripts": True}


def heading(count: int) -> str:
    more = "+" if count >= PREVIEW_SHOWN else ""
    return f"The last {PREVIEW_DAYS} days would have brought {count}{more} paper{'' if count == 1 else 's'}"


def routes(site: Site) -> list[Route]:
    script = (default_templates() / "static" / SCRIPT).read_bytes()

    async def preview(request: Request) -> Response:
        data = await read_form(request)
        if not site.form_ok(data, FORM, FORM):
            return JSONResponse({"error": "This page is too old: reload it."}, status_code=403)
        form = signup.read_profile(data, site.dep.config.settings, with_address=False)
        errors = {k: v for k, v in form.errors.items() if k in QUERY_FIELDS}
        if errors:
            return JSONResponse({"errors": errors, "papers": []})
        now = site.clock()
        shown = await site.in_store(lambda s: signup.preview(signup.recent(s, now), form.fields))
        return JSONResponse({"errors": {}, "heading": heading(len(shown)),
                             "papers": [{"title": m.entry.title, "terms": list(m.terms)} for m in shown]})

    async def static(request: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    return [Route("/preview", preview, methods=["POST"]), Route(f"/static/{SCRIPT}", static, methods=["GET"])]
