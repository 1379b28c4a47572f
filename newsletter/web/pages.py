"""Reader-facing pages: templates/pages/*.html.j2 (a user's template folder may override them),
rendered into responses whose inline <style> carries the nonce the guard put in the CSP."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.rendering import environment
from newsletter.web.guard import csp


class Pages:
    def __init__(self, templates: Path | None = None, **common: Any) -> None:
        self.env = environment(templates)
        self.common = common  # shown on every page, e.g. the newsletter's title

    def render(self, request: Request, name: str, status: int = 200, headers: Mapping[str, str] | None = None,
               background: BackgroundTask | None = None, scripts: bool = False, **context: Any) -> HTMLResponse:
        """`scripts`: the page loads this site's script files (the CSP allows them, and only them)."""
        nonce = request.scope.get("state", {}).get("nonce", "")
        html = self.env.get_template(f"pages/{name}.html.j2").render(**self.common, **context, nonce=nonce)
        if scripts:
            headers = {**(headers or {}), "Content-Security-Policy": csp(nonce, scripts=True)}
        return HTMLResponse(html, status_code=status, headers=headers, background=background)


async def no_icon(request: Request) -> Response:
    """/favicon.ico: browsers ask for one, and a 404 would show as an error in their console."""
    return Response(status_code=204)
