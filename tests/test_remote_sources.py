"""Remote sources against a real HTTP server on 127.0.0.1 (pytest-httpserver) serving captured feeds."""

from __future__ import annotations

import logging

import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import DATA, free_port, run, write_config

HF = (DATA / "hf_daily_papers_2026-07-31_5items.json").read_bytes()
RSS = (DATA / "arxiv_rss_cs.CL_2026-04-27_3items.xml").read_bytes()


def sources_yaml(base: str, extra: str = "") -> str:
    return (
        "  sources:\n"
        f"    - name: hf\n      type: hf-daily\n      url: {base}/api/daily_papers\n"
        f"    - name: arxiv\n      type: arxiv\n      url: {base}/rss/cs.CL\n" + extra
    )


def conditional(body: bytes, etag: str, hits: list[str]):  # noqa: ANN201
    def handler(request: Request) -> Response:
        if request.headers.get("If-None-Match") == etag:
            hits.append("304")
            return Response(status=304)
        hits.append("200")
        return Response(body, headers={"ETag": etag, "Content-Type": "application/json"})
    return handler


def test_fetch_parse_and_conditional_get(httpserver: HTTPServer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    hits: list[str] = []
    httpserver.expect_request("/api/daily_papers").respond_with_handler(conditional(HF, '"v1"', hits))
    httpserver.expect_request("/rss/cs.CL").respond_with_data(RSS, content_type="application/rss+xml")
    project = write_config(tmp_path, sources=sources_yaml(httpserver.url_for("").rstrip("/")))
    assert run("--file", str(project), "ingest") == 0
    out = capsys.readouterr().out
    assert "hf: 5 new, 0 updated, 0 unchanged" in out and "arxiv: 3 new" in out
    assert run("--file", str(project), "ingest") == 0
    out = capsys.readouterr().out
    assert "hf: not modified since the last fetch" in out
    assert hits == ["200", "304"]
    ua = httpserver.log[0][0].headers.get("User-Agent")
    assert ua.startswith("newsletter/")


def test_a_failing_source_is_reported_and_the_others_are_ingested(httpserver: HTTPServer, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def slow(request: Request) -> Response:
        time.sleep(2)
        return Response(RSS)

    httpserver.expect_request("/api/daily_papers").respond_with_data("boom", status=500)
    httpserver.expect_request("/rss/cs.CL").respond_with_data(RSS, content_type="application/rss+xml")
    httpserver.expect_request("/slow").respond_with_handler(slow)
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000)
    base = httpserver.url_for("").rstrip("/")
    extra = (f"    - name: slow\n      type: feed\n      url: {base}/slow\n      timeout: 0.5\n"
             f"    - name: big\n      type: feed\n      url: {base}/big\n      max_bytes: 1000\n")
    project = write_config(tmp_path, sources=sources_yaml(base, extra))
    assert run("--file", str(project), "ingest") == 1
    captured = capsys.readouterr()
    assert "arxiv: 3 new" in captured.out
    assert f"error: source 'hf': {base}/api/daily_papers answered HTTP 500" in captured.err
    assert f"error: source 'slow': {base}/slow timed out" in captured.err
    assert f"error: source 'big': {base}/big is 5000 bytes, over the 1000-byte cap" in captured.err
    assert run("--file", str(project), "status", "--json") == 0
    import json

    status = json.loads(capsys.readouterr().out)
    errors = {s["name"]: s["error"] for s in status["sources"]}
    assert errors["arxiv"] is None and "HTTP 500" in errors["hf"] and "timed out" in errors["slow"]


def test_preview_and_send_keep_going_when_a_source_fails(httpserver: HTTPServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    httpserver.expect_request("/api/daily_papers").respond_with_data("nope", status=503)
    httpserver.expect_request("/rss/cs.CL").respond_with_data(RSS, content_type="application/rss+xml")
    subs = "  - email: ada@example.org\n    keywords: ['LLM']\n"
    project = write_config(tmp_path, sources=sources_yaml(httpserver.url_for("").rstrip("/")), subscribers=subs)
    out = tmp_path / "p"
    assert run("--file", str(project), "preview", "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert "error: source 'hf'" in captured.err and "HTTP 503" in captured.err
    assert (out / "ada@example.org.html").exists()


@pytest.mark.parametrize("path", sorted(p.name for p in DATA.glob("*.xml")) + sorted(p.name for p in DATA.glob("hf_*.json")))
def test_every_captured_feed_parses_over_http(httpserver: HTTPServer, tmp_path: Path, path: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    httpserver.expect_request("/feed").respond_with_data((DATA / path).read_bytes())
    assert run("--state", str(tmp_path / "s.sqlite3"), "ingest", httpserver.url_for("/feed")) == 0
    out = capsys.readouterr().out
    # an arXiv error entry, a zero-result answer and an empty weekend listing are not papers
    expected_none = any(k in path for k in ("HTTP400_error_entry", "zero_results", "weekend_empty"))
    assert (" 0 new" in out) is expected_none, out


def test_hf_daily_follows_next_pages_and_an_empty_weekend_is_not_an_error(
        httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    items = json.loads((DATA / "hf_daily_papers_2026-06-12_30items.json").read_bytes())
    base = httpserver.url_for("/api/daily_papers")
    httpserver.expect_request("/api/daily_papers", query_string="").respond_with_json(
        items[:10], headers={"Link": f'<{base}?p=1>; rel="next"'})
    httpserver.expect_request("/api/daily_papers", query_string="p=1").respond_with_json(
        items[10:25], headers={"Link": '</api/daily_papers?p=2>; rel="next"'})
    httpserver.expect_request("/api/daily_papers", query_string="p=2").respond_with_json(items[25:])
    httpserver.expect_request("/weekend").respond_with_json([])
    sources = (f"  sources:\n    - name: hf\n      type: hf-daily\n      url: {base}\n"
               f"    - name: weekend\n      type: hf-daily\n      url: {httpserver.url_for('/weekend')}\n")
    project = write_config(tmp_path, sources=sources)
    assert run("--file", str(project), "ingest") == 0
    out = capsys.readouterr().out
    assert "hf: 30 new, 0 updated, 0 unchanged" in out
    assert "weekend: 0 new, 0 updated, 0 unchanged" in out


# --- a total deadline per fetch (issue 15, item 3) ------------------------------------------------

class DripServer:
    """A loopback HTTP server that sends its answer one byte every `interval` seconds.

    `head_first`: the status line and headers arrive at once and only the body drips; otherwise
    the headers drip too. Counts the bytes it managed to send before the client hung up.
    """

    def __init__(self, body: bytes, interval: float, head_first: bool) -> None:
        import socket
        import threading

        self.body, self.interval, self.head_first = body, interval, head_first
        self.sent = 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\n\r\n".encode()
        with conn:
            conn.recv(65536)
            if self.head_first:
                conn.sendall(head)
            rest = self.body if self.head_first else head + self.body
            for i in range(len(rest)):
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(rest[i:i + 1])
                except OSError:  # the client hung up
                    return
                self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join()


@pytest.mark.parametrize("head_first", [True, False], ids=["body-drips", "headers-drip"])
def test_a_slow_drip_server_is_cut_off_at_the_sources_timeout(head_first: bool) -> None:
    from newsletter.errors import SourceError
    from newsletter.models import SourceConfig
    from newsletter.sources import fetch

    server = DripServer(b"x" * 30, interval=1.5, head_first=head_first)
    try:
        src = SourceConfig(name="drip", type="feed", url=server.url, timeout=3)
        with pytest.raises(SourceError) as caught:
            fetch.read(src)  # each read gets a byte within 1.5 s: a per-read timeout never fires
        assert str(caught.value) == f"source 'drip': {server.url} timed out (the whole fetch may take 3 s)"
    finally:
        server.close()
    total = len(server.body) + (0 if head_first else len("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"))
    assert server.sent < total / 2  # cut off early, not served to the end


# --- credentials in source URLs (issue 15, item 14) -----------------------------------------------

def test_credentials_in_source_urls_never_reach_messages_or_the_state(httpserver: HTTPServer, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import json

    import yaml

    from newsletter.errors import SourceError
    from newsletter.sources.fetch import fetch_url, redact_url

    httpserver.expect_request("/feed").respond_with_data("gone", status=410)
    port = httpserver.port
    secret_url = f"http://reader:s3cr3tT0ken@127.0.0.1:{port}/feed?key=K3YK3YK3Y&cat=cs.CL"
    sources = yaml.safe_dump({"sources": [{"name": "private", "type": "feed", "url": secret_url}]})
    project = write_config(tmp_path, sources="".join("  " + ln + "\n" for ln in sources.splitlines()))
    with caplog.at_level(logging.INFO, logger="httpx"):  # as `run --verbose` logs: the URL kept, redacted
        assert run("--file", str(project), "ingest") == 1
    shown = f"http://***@127.0.0.1:{port}/feed?key=***&cat=cs.CL"
    assert capsys.readouterr().err == f"error: source 'private': {shown} answered HTTP 410\n"
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")  # not the test server's
    assert f"HTTP Request: GET {shown}" in ours
    assert "s3cr3tT0ken" not in ours and "K3YK3YK3Y" not in ours
    assert run("--file", str(project), "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sources"][0]["error"] == f"source 'private': {shown} answered HTTP 410"
    state = b"".join(p.read_bytes() for p in tmp_path.glob(".newsletter/state.sqlite3*"))
    assert b"s3cr3tT0ken" not in state and b"K3YK3YK3Y" not in state and shown.encode() in state
    # on the command line too, where the URL is also the report's name
    assert run("--file", str(project), "ingest", secret_url) == 1
    captured = capsys.readouterr()
    assert "s3cr3tT0ken" not in captured.out + captured.err and "K3YK3YK3Y" not in captured.out + captured.err
    # a refused connection's message is redacted as well
    closed = f"http://u:pw-zz9@127.0.0.1:{free_port()}/x?token=abc"
    with pytest.raises(SourceError) as caught:
        fetch_url(closed, "c")
    assert str(caught.value).startswith(f"source 'c': cannot fetch {redact_url(closed)}: ")
    assert "pw-zz9" not in str(caught.value) and "abc" not in str(caught.value)
    assert redact_url("https://h/api?search_query=cat:cs.CL&id_list=2401.01234&u=3f9a8b7c6d5e4f3a2b1c") == (
        "https://h/api?search_query=cat:cs.CL&id_list=2401.01234&u=***")
