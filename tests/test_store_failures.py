"""A state that fails after it was opened (issue 14, issue 15): the PostgreSQL server drops the
connection, a SQLite file turns read-only. Each is the project's StateError naming the state (never
a password, never a driver traceback), and nothing half-written is kept."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from newsletter.errors import StateError
from newsletter.models import Subscriber
from newsletter.store import Store

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
ADA = Subscriber("ada@example.org", "Ada", ('"language model"',), (), "0 7 * * *", "UTC", 5, 0, False, home="store")


def test_a_postgresql_connection_lost_mid_use_is_a_state_error(pg_cluster) -> None:  # noqa: ANN001
    import psycopg

    url = pg_cluster.database()
    with Store(url) as store:
        store.add_subscribers([ADA], NOW)
        pid = store._q("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:  # the server ends it
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with pytest.raises(StateError) as failed:
            store.set_unsubscribed(ADA.email, NOW)
        assert str(failed.value).startswith(f"{url}: the PostgreSQL state failed: ")
        assert not isinstance(failed.value.__cause__, StateError)  # the driver's error is kept as the cause
    with Store(url) as again:  # a new connection: the state is as it was
        assert again.states([ADA.email]).get(ADA.email) is None or \
            again.states([ADA.email])[ADA.email].unsubscribed_at is None


def test_a_sqlite_file_that_refuses_writes_is_a_state_error_and_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with Store(path) as store:
        store.add_subscribers([ADA], NOW)
        store.db.execute("PRAGMA query_only=1")  # SQLite's own refusal to write, as on a read-only file
        with pytest.raises(StateError, match=f"{path}: the state file failed: attempt to write a readonly"):
            store.set_unsubscribed(ADA.email, NOW)
        assert not store.db.in_transaction  # rolled back: the store can go on
        store.db.execute("PRAGMA query_only=0")
        assert store.subscriber_count() == 1
    with Store(path) as again:
        state = again.states([ADA.email]).get(ADA.email)
        assert state is None or state.unsubscribed_at is None


def test_a_corrupt_page_in_the_state_file_is_named_not_a_traceback(tmp_path: Path, smtp_server,  # noqa: ANN001
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The entries table's root page overwritten on disk (the header and the schema left intact, so
    the file opens): reading says which file and what SQLite found, in one line."""
    from conftest import run, write_config

    recorder, port = smtp_server
    project = write_config(tmp_path, port=port)
    state = tmp_path / ".newsletter" / "state.sqlite3"
    assert run("--file", str(project), "ingest") == 0
    with Store(state) as store:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = store.db.execute("PRAGMA page_size").fetchone()[0]
        root = store.db.execute("SELECT rootpage FROM sqlite_master WHERE name='entries'").fetchone()[0]
    assert root > 1
    data = bytearray(state.read_bytes())
    data[(root - 1) * page:root * page] = bytes([0xA5]) * page
    state.write_bytes(bytes(data))
    with Store(state) as store, pytest.raises(StateError) as failed:  # it opens; reading the papers fails
        store.entries()
    assert str(failed.value) == f"{state}: the state file failed: database disk image is malformed"
    capsys.readouterr()
    assert run("--file", str(project), "entries") == 1  # and a command says so in one line
    err = capsys.readouterr().err
    assert str(state) in err and "malformed" in err and "Traceback" not in err and recorder.messages == []


def test_a_read_only_state_folder_serves_reading_commands_and_file_edits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15, finding 15: the state's folder cannot be written (made immutable: even root cannot
    create the file SQLite's WAL needs there). Reading commands work; adding a subscriber to the file
    succeeds and says so; writing to the store says which file and why, and changes nothing."""
    import subprocess

    from conftest import run, write_config

    project = write_config(tmp_path)
    state = tmp_path / ".newsletter" / "state.sqlite3"
    assert run("--file", str(project), "ingest") == 0
    assert run("--file", str(project), "subscribers", "add", "--store", "held@example.org", "--keyword", "LLM") == 0
    for extra in state.parent.glob("state.sqlite3-*"):
        extra.unlink()  # as after a clean close: only the file itself
    subprocess.run(["chattr", "+i", str(state.parent)], check=True)
    try:
        with pytest.raises(OSError):
            (state.parent / "probe").touch()  # the folder really is read-only, for root too
        capsys.readouterr()
        for command in (["status"], ["entries"], ["subscribers", "list"], ["match", "LLM"], ["validate"]):
            assert run("--file", str(project), *command) == 0, command
        out = capsys.readouterr().out
        assert "held@example.org (store)" in out and "entries" in out
        assert run("--file", str(project), "subscribers", "add", "new@example.org", "--keyword", "LLM") == 0
        captured = capsys.readouterr()
        assert "added new@example.org" in captured.out + captured.err and "error" not in captured.err
        assert run("--file", str(project), "subscribers", "add", "--store", "other@example.org",
                   "--keyword", "LLM") == 1
        assert f"{state}: cannot use the state file: unable to open database file" in capsys.readouterr().err
    finally:
        subprocess.run(["chattr", "-i", str(state.parent)], check=True)
    assert "new@example.org" in project.read_text()
    with Store(state) as store:
        assert store.known(["held@example.org", "other@example.org"]) == {"held@example.org"}
