"""uvicorn inside the running asyncio loop: `start` binds, serves as a task and returns at once;
`Running.stop` ends it. The caller owns the signals (uvicorn's own handlers are not installed)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from newsletter.errors import ConfigError

log = logging.getLogger("newsletter.web")
MAX_HEAD = 16 * 1024  # request line and headers
MAX_CONNECTIONS = 200  # more at once are answered 503 by uvicorn


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM/SIGINT belong to `run`, `serve` and the workbench, which stop us in order


@dataclass
class Running:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (5 s at most), close."""
        self.server.should_exit = True
        await self.task


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named explicitly: asyncio turns Nagle off only on IPPROTO_TCP sockets, and with it on
    # every keep-alive response waits 40 ms for a delayed ACK (23 requests/s instead of thousands)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                          "(choose another --host or --port)") from exc
    return sock


async def start(app: ASGIApp, host: str, port: int) -> Running:
    """Serve `app` on host:port (0: a free port) in this loop; returns once it accepts connections."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        app, log_config=None, access_log=False,  # access logs would hold the tokens in the URLs
        lifespan="off", server_header=False, proxy_headers=False, timeout_keep_alive=5,
        timeout_graceful_shutdown=5, limit_concurrency=MAX_CONNECTIONS, h11_max_incomplete_event_size=MAX_HEAD)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # startup failed: raise why
            raise ConfigError(f"the web server on {host}:{port} did not start")
        await asyncio.sleep(0.01)
    bound = sock.getsockname()[1]
    log.debug("listening on %s:%d", host, bound)
    return Running(server, task, host, bound)


async def until_signal() -> None:
    """Wait for SIGTERM or SIGINT (for `serve` and the workbench, which only serve)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
