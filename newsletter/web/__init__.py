"""The web side, served by `run`, `serve` and `preview --serve`: Starlette apps on uvicorn, inside the
service's own asyncio loop, behind one guard (Host check, same-origin writes, strict headers)."""

from newsletter.web.guard import LOOPBACK, Guard, allowed_hosts
from newsletter.web.server import Running, start, until_signal
from newsletter.web.unsubscribe import unsubscribe_app

__all__ = ["LOOPBACK", "Guard", "Running", "allowed_hosts", "start", "unsubscribe_app", "until_signal"]
