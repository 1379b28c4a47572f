"""Reading a source's bytes: local files, or HTTP(S) with a total deadline, a size cap and conditional GET.

A source's `timeout:` bounds the whole fetch (every page, redirect and byte), not each read: a server
that drips one byte a second is cut off at the deadline. Credentials in URLs never reach a message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from newsletter.errors import RateLimited, SourceError
from newsletter.models import SourceConfig
from newsletter.sources.fields import load_json

USER_AGENT = "newsletter/0.1 (paper digest; +https://github.com/newsletter-digest/newsletter)"
MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = 30.0  # seconds for the whole fetch
CONNECT_TIMEOUT = 10.0
MAX_PAGES = 10

# A query value is hidden when its name says it is a secret, or when it looks like a token
# (long, letters and digits, no spaces or colons): `?key=...`, `?u=3f9a...`; `?search_query=cat:cs.CL`
# and `?id_list=2401.01234` stay readable.
_SECRET_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig|session|cred|private", re.I)
_TOKEN_LIKE = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])[A-Za-z0-9_\-.~+/=%]{16,}")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with any user:password@ and secret-looking query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://)[^/@\s]*@", r"\1***@", url.split("?", 1)[0]) + ("?***" if "?" in url else "")
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_NAME.search(k) or _TOKEN_LIKE.fullmatch(v) else v)
                           for k, v in pairs], safe=":/,*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """Every URL inside `text` (an exception's message, say) passed through redact_url."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


class _RedactedRequests(logging.Filter):
    """httpx logs each request at INFO with the whole URL (a user, a password, a `key=` in the
    query): the line is kept, with the URL as `redact_url` shows it (`run` logs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact(str(a)) if "://" in str(a) else a for a in args)
        record.msg = redact(str(record.msg))
        return True


logging.getLogger("httpx").addFilter(_RedactedRequests())


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: not modified since the last fetch
    etag: str | None = None
    last_modified: str | None = None
    next_url: str | None = None  # a `Link: <...>; rel="next"` page, same host only
    requests_left: int | None = None  # what the server's RateLimit headers say is left of its window
    reset_after: float | None = None  # seconds until that window resets


_NUMBER = r"\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)"
_RL_LEFT = re.compile(r"(?:^|[;,\s])r" + _NUMBER)  # RateLimit: "api";r=0;t=42 (IETF draft)
_RL_RESET = re.compile(r"(?:^|[;,\s])t" + _NUMBER)


def rate_limit(headers: httpx.Headers) -> tuple[int | None, float | None]:
    """(requests left, seconds until reset) from RateLimit (IETF draft: `"api";r=0;t=42`),
    RateLimit-Remaining/-Reset or X-RateLimit-Remaining/-Reset; None where the server says nothing."""
    left: int | None = None
    reset: float | None = None
    combined = headers.get("RateLimit")
    if combined:
        if m := _RL_LEFT.search(combined):
            left = int(float(m.group(1)))
        if m := _RL_RESET.search(combined):
            reset = float(m.group(1))
    for prefix in ("RateLimit-", "X-RateLimit-"):
        if left is None and (v := headers.get(prefix + "Remaining", "").strip()).isdigit():
            left = int(v)
        if reset is None and (v := headers.get(prefix + "Reset", "").strip()).isdigit():
            reset = float(v)
    return left, reset


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date), else the RateLimit reset."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return rate_limit(headers)[1]


# --- local files ----------------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_path(path: Path, name: str, max_bytes: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, at most `max_bytes`; devices, FIFOs and directories are refused
    (opened non-blocking, so a FIFO with no writer cannot hang the run)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SourceError(f"source '{name}': no such file {path}") from None
    except OSError as exc:
        raise SourceError(f"source '{name}': cannot read {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((what for test, what in _KINDS if test(info.st_mode)), None)
            raise SourceError(f"source '{name}': {path} is {kind or 'not a regular file'}"
                              f"{', not a regular file' if kind else ''}")
        if info.st_size > max_bytes:
            raise SourceError(f"source '{name}': {path} is {info.st_size} bytes, "
                              f"over the {max_bytes}-byte cap")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"source '{name}': cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SourceError(f"source '{name}': {path} is over the {max_bytes}-byte cap")
    return data


# --- HTTP -----------------------------------------------------------------------------------------

class _Deadline:
    """Cuts every connection of a fetch at its deadline, whatever read or write is blocked.

    httpx's timeouts bound each read; a server dripping a byte per second never trips them. httpcore
    reports each new connection through the request's `trace` extension; at the deadline a timer
    thread shuts those sockets down (through a duplicate descriptor, so a descriptor number reused
    after the fetch can never be hit), which wakes the blocked read with an error.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._cut)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return
        with self._lock:
            fd = os.dup(sock.fileno())
            self._fds.append(fd)
            if self.expired:
                _shutdown(fd)

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            for fd in self._fds:
                _shutdown(fd)


def _shutdown(fd: int) -> None:
    dup = socket.socket(fileno=os.dup(fd))
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by httpx
    finally:
        dup.close()


def fetch_url(url: str, name: str, *, etag: str | None = None, last_modified: str | None = None,
              max_bytes: int = MAX_BYTES, timeout: httpx.Timeout | float = TIMEOUT,
              deadline: float | None = None) -> Fetched:
    """GET `url` within `timeout` seconds in all (or by the monotonic `deadline` when given)."""
    seconds = timeout if isinstance(timeout, int | float) else (timeout.read or TIMEOUT)
    if deadline is None:
        deadline = time.monotonic() + seconds
    shown = redact_url(url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    guard = _Deadline(deadline)

    def timed_out() -> SourceError:
        return SourceError(f"source '{name}': {shown} timed out (the whole fetch may take {seconds:g} s)")

    left = max(0.001, guard.remaining())
    limits = httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT))
    try:
        with guard, httpx.Client(timeout=limits, follow_redirects=True, max_redirects=5) as client:
            with client.stream("GET", url, headers=headers, extensions={"trace": guard.trace}) as response:
                quota, reset = rate_limit(response.headers)
                if response.status_code == 304:
                    return Fetched(None, etag, last_modified, requests_left=quota, reset_after=reset)
                if response.status_code == 429:
                    wait = retry_after(response.headers)
                    said = f" (retry after {wait:g} s)" if wait is not None else ""
                    raise RateLimited(f"source '{name}': {shown} answered HTTP 429 Too Many Requests{said}",
                                      retry_after=wait)
                if response.status_code >= 400:
                    raise SourceError(f"source '{name}': {shown} answered HTTP {response.status_code}")
                if response.url.scheme not in ("http", "https"):
                    raise SourceError(f"source '{name}': redirected to a non-HTTP URL")
                size = int(response.headers.get("Content-Length") or 0)
                if size > max_bytes:
                    raise SourceError(f"source '{name}': {shown} is {size} bytes, over the {max_bytes}-byte cap")
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise SourceError(f"source '{name}': {shown} is over the {max_bytes}-byte cap")
                    if guard.remaining() <= 0:
                        raise timed_out()
                    chunks.append(chunk)
                nxt = response.links.get("next", {}).get("url")
                if nxt:
                    nxt = str(response.url.join(nxt))
                    if httpx.URL(nxt).host != response.url.host or httpx.URL(nxt).scheme not in ("http", "https"):
                        nxt = None
                return Fetched(b"".join(chunks), response.headers.get("ETag"),
                               response.headers.get("Last-Modified"), nxt, quota, reset)
    except httpx.TimeoutException as exc:
        raise timed_out() from exc
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        if guard.expired:
            raise timed_out() from exc
        raise SourceError(f"source '{name}': cannot fetch {shown}: {redact(str(exc))}") from exc


def read(source: SourceConfig, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
    if source.path is not None:
        return Fetched(read_path(source.path, source.name, source.max_bytes))
    assert source.url is not None
    deadline = time.monotonic() + source.timeout  # one deadline for every page of this fetch
    first = fetch_url(source.url, source.name, etag=etag, last_modified=last_modified,
                      max_bytes=source.max_bytes, timeout=source.timeout, deadline=deadline)
    if source.type != "hf-daily" or first.data is None or not first.next_url:
        return first
    # The daily-papers API pages with Link: rel="next"; gather the pages into one JSON array.
    items = _json_array(first.data, source.name)
    nxt: str | None = first.next_url
    seen = {source.url}
    for _ in range(MAX_PAGES - 1):
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        page = fetch_url(nxt, source.name, max_bytes=source.max_bytes, timeout=source.timeout,
                         deadline=deadline)
        more = _json_array(page.data or b"[]", source.name)
        if not more:
            break
        items.extend(more)
        nxt = page.next_url
    return Fetched(json.dumps(items).encode(), first.etag, first.last_modified)


def _json_array(data: bytes, name: str) -> list[object]:
    try:
        value = load_json(data, name)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8
        raise SourceError(f"source '{name}': not JSON ({exc})") from exc
    if not isinstance(value, list):
        raise SourceError(f"source '{name}': expected a JSON array of daily papers")
    return value
