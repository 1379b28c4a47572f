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
