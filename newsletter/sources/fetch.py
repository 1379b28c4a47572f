"""Reading a source's bytes: local files, or HTTP(S) with timeouts, a size cap and conditional GET."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from newsletter.errors import SourceError
from newsletter.models import SourceConfig

USER_AGENT = "newsletter/0.1 (paper digest; +https://github.com/newsletter-digest/newsletter)"
MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Fetched:
    data: bytes | None  # None: not modified since the last fetch
    etag: str | None = None
    last_modified: str | None = None
    next_url: str | None = None  # a `Link: <...>; rel="next"` page, same host only

MAX_PAGES = 10


def read_path(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"source '{name}': no such file {path}") from None
    except OSError as exc:
        raise SourceError(f"source '{name}': cannot read {path}: {exc.strerror}") from exc


def fetch_url(url: str, name: str, *, etag: str | None = None, last_modified: str | None = None,
              max_bytes: int = MAX_BYTES, timeout: httpx.Timeout | float = TIMEOUT) -> Fetched:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=5) as client:
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304:
                    return Fetched(None, etag, last_modified)
                if response.status_code >= 400:
                    raise SourceError(f"source '{name}': {url} answered HTTP {response.status_code}")
                if response.url.scheme not in ("http", "https"):
                    raise SourceError(f"source '{name}': redirected to a non-HTTP URL")
                size = int(response.headers.get("Content-Length") or 0)
                if size > max_bytes:
                    raise SourceError(f"source '{name}': {url} is {size} bytes, over the {max_bytes}-byte cap")
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise SourceError(f"source '{name}': {url} is over the {max_bytes}-byte cap")
                    chunks.append(chunk)
                nxt = response.links.get("next", {}).get("url")
                if nxt:
                    nxt = str(response.url.join(nxt))
                    if httpx.URL(nxt).host != response.url.host or httpx.URL(nxt).scheme not in ("http", "https"):
                        nxt = None
                return Fetched(b"".join(chunks), response.headers.get("ETag"),
                               response.headers.get("Last-Modified"), nxt)
    except httpx.TimeoutException as exc:
        raise SourceError(f"source '{name}': {url} timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise SourceError(f"source '{name}': cannot fetch {url}: {exc}") from exc


def read(source: SourceConfig, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
    if source.path is not None:
        return Fetched(read_path(source.path, source.name))
    assert source.url is not None
    first = fetch_url(source.url, source.name, etag=etag, last_modified=last_modified,
                      max_bytes=source.max_bytes, timeout=httpx.Timeout(source.timeout))
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
        page = fetch_url(nxt, source.name, max_bytes=source.max_bytes, timeout=httpx.Timeout(source.timeout))
        more = _json_array(page.data or b"[]", source.name)
        if not more:
            break
        items.extend(more)
        nxt = page.next_url
    return Fetched(json.dumps(items).encode(), first.etag, first.last_modified)


def _json_array(data: bytes, name: str) -> list[object]:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"source '{name}': not JSON ({exc})") from exc
    if not isinstance(value, list):
        raise SourceError(f"source '{name}': expected a JSON array of daily papers")
    return value
