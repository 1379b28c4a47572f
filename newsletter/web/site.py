"""What every reader page shares: the deployment (re-read when the service reloads it), signed
links and their one refusal, the signed per-form token, the client's address, store access off the
event loop, and sending a notice after the answer has gone out."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter import notices
from newsletter.config import load
from newsletter.deployment import Deployment
from newsletter.errors import ConfigError
from newsletter.links import Links
from newsletter.signup import Notice, Policy
from newsletter.store_readers import ReaderStore
from newsletter.tokens import Purpose, check, make
from newsletter.web.guard import LOOPBACK
from newsletter.web.pages import Pages

log = logging.getLogger("newsletter.web")
FORM_LIFE = timedelta(hours=2)
T = TypeVar("T")


@dataclass
class Site:
    deployment: Callable[[], Deployment]
    env: Mapping[str, str]
    clock: Callable[[], datetime]
    policy: Policy
    pages: Pages
    # after a confirmation: the service delivers the first digest at once
    on_confirmed: Callable[[str], None] | None = None

    @property
    def dep(self) -> Deployment:
        return self.deployment()

    @property
    def links(self) -> Links:
        settings = self.dep.config.settings
        return Links((settings.base_url or "").rstrip("/"), self.dep.secrets.link_secret or "")

    def subject(self, request: Request, purpose: Purpose) -> str | None:
        now = self.clock()
        return check(request.path_params["token"], purpose, self.dep.secrets.verifying_at(now), now)

    def refusal(self, request: Request) -> Response:
        """The one answer to every bad link: forged, altered, expired, used, revoked or another purpose."""
        return self.pages.render(request, "message", 400, heading="This link is not valid",
                                 text="This link is not valid (it may be old or already used). Use the newest "
                                      "link you received, or sign up again.")

    # --- forms -----------------------------------------------------------------------------------

    def form_token(self, form: str, page: str) -> str:
        """A per-form anti-forgery token, bound to the page (its link token) and valid two hours."""
        return make(Purpose.FORM, f"{form}\n{_digest(page)}", self._secret(), expires=self.clock() + FORM_LIFE)

    def form_ok(self, submitted: Mapping[str, Any], form: str, page: str) -> bool:
        token = submitted.get("csrf")
        return isinstance(token, str) and check(token, Purpose.FORM, self._form_keys(), self.clock()) == \
            f"{form}\n{_digest(page)}"

    def _secret(self) -> str:
        return self.dep.secrets.link_secret or ""

    def _form_keys(self) -> tuple[str, ...]:
        return self.dep.secrets.verifying_at(self.clock())

    def stale(self, request: Request) -> Response:
        return self.pages.render(request, "message", 403, heading="Please try again",
                                 text="This form is too old or did not come from this site. Go back, reload "
                                      "the page and submit it again.")

    # --- the rest ----------------------------------------------------------------------------------

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Call fn(store, *args) on a worker thread with a connection of its own."""
        state = self.dep.state  # asked here, on the loop: the service may swap the deployment

        def call() -> T:
            with ReaderStore(state) as store:
                return fn(store, *args)
        return await run_in_threadpool(call)

    def deliver_after(self, notice: Notice | None) -> BackgroundTask | None:
        """Send the notice once the answer is out, so the time taken says nothing about the address."""
        if notice is None:
            return None
        settings = self.dep.config.settings
        message = notices.compose(settings, notice.to, notice.subject, notice.text, self.clock())
        return BackgroundTask(notices.send, settings, notice.to, message)


MAX_FIELDS = 40


async def read_form(request: Request) -> dict[str, str]:
    """The fields of our own forms (application/x-www-form-urlencoded, the body already bounded by
    the app). Anything else, or undecodable, is an empty form, which every handler refuses."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        await request.body()
        return {}
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


def client_address(request: Request) -> str:
    """The client's IP: the peer, or, when the peer is a proxy on this machine, the address it
    appended to X-Forwarded-For (the last one: earlier ones are the client's own claims)."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for")
    if peer in LOOPBACK and forwarded:
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Current:
    """The deployment of `serve`, re-read when subscribers.yaml changes (an invalid edit keeps the
    last good one), so pages show an edit the moment it is written."""

    def __init__(self, dep: Deployment, env: Mapping[str, str]) -> None:
        self.dep, self.env = dep, dict(env)
        self.stamp = _stamp(dep)

    def __call__(self) -> Deployment:
        stamp = _stamp(self.dep)
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                self.dep = Deployment(load(self.dep.config.path, self.env), self.dep.state, self.dep.secrets)
            except ConfigError as exc:
                log.error("%s changed but is invalid; keeping the previous configuration: %s",
                          self.dep.config.path, exc)
        return self.dep


def _stamp(dep: Deployment) -> tuple[int, int]:
    try:
        st = dep.config.path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)
