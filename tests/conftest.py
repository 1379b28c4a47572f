"""Shared fixtures: real SMTP servers (aiosmtpd) on 127.0.0.1, project files in tmp_path, the CLI."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from newsletter.cli import main

DATA = Path(__file__).parent / "data"
LISTING = DATA / "daily_papers_listing.txt"


def free_port() -> int:
    # aiosmtpd 1.4.6 fails with port=0: pick a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Recorder:
    """An aiosmtpd handler that records every accepted message and can refuse recipients."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # address -> replies in turn
    data_reply: str = "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        replies = self.rcpt_replies.get(address)
        if replies:
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if not self.data_reply.startswith("250"):
            return self.data_reply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return self.data_reply

    def parsed(self) -> list[EmailMessage]:
        return [message_from_bytes(m[2], policy=policy.default) for m in self.messages]  # type: ignore[misc]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


DEFAULT_SUBSCRIBERS = """\
  - email: ada@example.org
    name: Ada
    keywords: ['"language model"']
    max_entries: 3
  - email: grace@example.org
    keywords: ['causal*']
    timezone: America/New_York
  - email: nobody@example.org
    keywords: ['xylophone']
"""

DEFAULT_SOURCES = """\
  sources:
    - name: listing
      type: hf-listing
      path: data/listing.txt
"""


def edit_config(project: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Change a project's subscribers.yaml as data: read it, change the mapping, write it back (a text
    replacement would silently do nothing once the text it looks for moves)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    doc = yaml.load(project.read_text(encoding="utf-8"), Loader=loader)
    change(doc)
    project.write_text(yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_config(folder: Path, *, port: int = 2525, subscribers: str = DEFAULT_SUBSCRIBERS,
                 extra: str = "", sources: str = DEFAULT_SOURCES) -> Path:
    """A project folder with the listing as its one source and three subscribers.

    `subscribers`, `extra` (more settings) and `sources` are YAML lines indented by two spaces.
    """
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "listing.txt").write_bytes(LISTING.read_bytes())
    text = (
        "newsletter:\n"
        "  title: Test Digest\n"
        '  sender: "Test Digest <digest@example.org>"\n'
        + sources
        + '  schedule: "0 7 * * *"\n'
        "  timezone: UTC\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 5}}\n"
        + extra
        + "subscribers:\n"
        + subscribers
    )
    path = folder / "subscribers.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def run(*args: str) -> int:
    """Run the CLI in-process, as `newsletter ARGS`; returns the exit code."""
    try:
        return main(list(args))
    except SystemExit as exc:  # argparse usage errors and --help
        return int(exc.code or 0)


# --- a throwaway PostgreSQL cluster (issue 14) ------------------------------------------------------

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@dataclass
class PgCluster:
    """A PostgreSQL server of its own in a temporary folder, reached over a unix socket there."""

    folder: Path
    count: int = 0

    def url(self, name: str) -> str:
        return f"postgresql:///{name}?host={self.folder}&user=newsletter"

    def database(self) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        self.count += 1
        name = f"t{self.count}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    import os

    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    import os
    import shutil
    import subprocess
    import tempfile

    if not PG_BIN:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (the tests start their own "
                    "throwaway server; they never use the system's cluster)")
    bin_dir = PG_BIN[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "newsletter", "--auth=trust",
                                 "-E", "UTF8", "--no-instructions"]),
                   check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    options = f"-k {folder} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=200"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                 str(folder / "server.log"), "-w", "start"]), check=True, capture_output=True)
    try:
        yield PgCluster(folder)
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A new, empty state: a SQLite file, then a PostgreSQL database (each test runs on both)."""
    if request.param == "sqlite":
        return tmp_path / ".newsletter" / "state.sqlite3"
    return request.getfixturevalue("pg_cluster").database()
