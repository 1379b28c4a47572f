"""The web side, served by `run`, `serve` and `preview --serve`: Starlette apps on uvicorn, inside the
service's own asyncio loop, behind one guard (Host check, same-origin writes, strict headers)."""

from newsletter.web.guard import LOOPBACK, Guard, allowed_hosts
from newsletter.web.server import Running, start, until_signal
from newsletter.web.readers import readers_app
from newsletter.web.site import Current
from newsletter.web.unsubscribe import unsubscribe_app

__all__ = ["LOOPBACK", "Current", "Guard", "Running", "allowed_hosts", "readers_app", "start", "unsubscribe_app",
           "until_signal"]
