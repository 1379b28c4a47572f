"""The SMTP Sender against real aiosmtpd servers on 127.0.0.1: opened once, batch after batch over
the same connections, outcomes as soon as they are known, closed at the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from conftest import Recorder, free_port
from newsletter.delivery import Job, Outcome, sender_for
from newsletter.delivery.maildir import MaildirSender
from newsletter.delivery.smtp import CIRCUIT_BREAKER, SmtpSender
from newsletter.models import SmtpConfig


@dataclass
class Counting(Recorder):
    """Records which connection (client port) carried each message, and every QUIT."""

    peers: list[int] = field(default_factory=list)
    quits: int = 0
    idle_421: int = 0  # answer MAIL with 421 this many times on a connection that already sent one
    sessions_with_mail: set[int] = field(default_factory=set)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        if self.idle_421 and id(session) in self.sessions_with_mail:
            self.idle_421 -= 1
            return "421 4.4.2 idle for too long, closing"
        self.sessions_with_mail.add(id(session))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.peers.append(session.peer[1])
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001
        self.quits += 1
        return "221 Bye"


@contextmanager
def serving(handler: Recorder, **options: object) -> Iterator[int]:
    """A real aiosmtpd server on 127.0.0.1 with this handler, for the duration; yields its port."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def counting() -> Iterator[tuple[Counting, int]]:
    handler = Counting()
    with serving(handler) as port:
        yield handler, port


def config(port: int, **kw: object) -> SmtpConfig:
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 5, "retries": 0}
    values.update(kw)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def jobs(first: int, count: int) -> list[Job]:
    return [Job(f"issue-{i}", "digest@example.org", f"user{i}@example.org",
                f"Message-ID: <{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode())
            for i in range(first, first + count)]


def test_connections_stay_open_across_batches_and_close_at_the_end(counting: tuple[Counting, int]) -> None:
    handler, port = counting
    outcomes: list[Outcome] = []

    async def main() -> int:
        async with SmtpSender(config(port, concurrency=2)) as sender:
            for batch in range(3):
                await sender.deliver(jobs(batch * 10, 10), outcomes.append)
            return handler.quits

    quits_inside = asyncio.run(main())
    assert sorted(o.issue_id for o in outcomes) == sorted(f"issue-{i}" for i in range(30))
    assert all(o.ok and o.code == 250 and o.text == "250 OK" for o in outcomes)
    assert len(handler.messages) == 30
    assert len(set(handler.peers)) == 2  # two connections carried all three batches
    assert quits_inside == 0 and handler.quits == 2  # QUIT only when the `async with` ends


def test_max_per_connection_opens_a_new_connection(counting: tuple[Counting, int]) -> None:
    handler, port = counting

    async def main() -> None:
        async with SmtpSender(config(port, concurrency=1, max_per_connection=4)) as sender:
            await sender.deliver(jobs(0, 6), lambda o: None)
            await sender.deliver(jobs(6, 4), lambda o: None)

    asyncio.run(main())
    assert len(handler.messages) == 10
    assert [handler.peers.count(p) for p in dict.fromkeys(handler.peers)] == [4, 4, 2]
    assert handler.quits == 3


def test_without_async_with_each_deliver_opens_and_closes(counting: tuple[Counting, int]) -> None:
    handler, port = counting
    sender = SmtpSender(config(port, concurrency=1))
    asyncio.run(sender.deliver(jobs(0, 3), lambda o: None))
    asyncio.run(sender.deliver(jobs(3, 3), lambda o: None))
    assert len(handler.messages) == 6 and len(set(handler.peers)) == 2 and handler.quits == 2


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure(
        counting: tuple[Counting, int]) -> None:
    handler, port = counting
    handler.idle_421 = 1
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with SmtpSender(config(port, concurrency=1)) as sender:
            await sender.deliver(jobs(0, 1), outcomes.append)
            await sender.deliver(jobs(1, 1), outcomes.append)  # MAIL gets 421 on the old line

    asyncio.run(main())
    assert [(o.issue_id, o.ok) for o in outcomes] == [("issue-0", True), ("issue-1", True)]
    assert handler.idle_421 == 0 and len(set(handler.peers)) == 2


def test_wire_form_goes_out_byte_for_byte_and_other_bytes_are_made_safe(smtp_server) -> None:  # noqa: ANN001
    recorder, port = smtp_server
    wire = b"Subject: a\r\n\r\nline\r\nend.\r\n"
    loose = b"Subject: b\n\n.starts with a dot\n.\nlast line without end"
    dotted = b"Subject: c\r\n\r\n.mj-outlook-group-fix { width:100% }\r\nsoft break=\r\n. Marketing\r\n.\r\n"
    sent = [Job("a", "digest@example.org", "a@example.org", wire),
            Job("b", "digest@example.org", "b@example.org", loose),
            Job("c", "digest@example.org", "c@example.org", dotted)]
    asyncio.run(SmtpSender(config(port, concurrency=1)).deliver(sent, lambda o: None))
    assert [m[2] for m in recorder.messages] == [
        wire, b"Subject: b\r\n\r\n.starts with a dot\r\n.\r\nlast line without end\r\n", dotted]


@dataclass
class WaitsForAnother(Recorder):
    """Holds the DATA of `slow` until the client has reported the outcome of another message."""

    slow: str = ""
    reported: threading.Event = field(default_factory=threading.Event)
    saw_report_first: bool = False

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if envelope.rcpt_tos == [self.slow]:
            for _ in range(500):  # a bound so a broken sender fails the test instead of hanging it
                if self.reported.is_set():
                    self.saw_report_first = True
                    break
                await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def test_each_outcome_is_reported_as_soon_as_it_is_known() -> None:
    handler = WaitsForAnother(slow="user0@example.org")
    outcomes: list[str] = []

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome.issue_id)
        if outcome.issue_id == "issue-1":
            handler.reported.set()

    with serving(handler) as port:
        asyncio.run(SmtpSender(config(port, concurrency=2)).deliver(jobs(0, 2), on_outcome))
    assert handler.saw_report_first and outcomes == ["issue-1", "issue-0"]


@dataclass
class HoldsData(Recorder):
    """Holds the DATA of `held` (up to ~10 s) and notes whether the client closed the connection under it."""

    held: str = ""
    holding: threading.Event = field(default_factory=threading.Event)
    gone: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if envelope.rcpt_tos != [self.held]:
            return await super().handle_DATA(server, session, envelope)
        self.holding.set()
        try:
            for _ in range(1000):
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:  # aiosmtpd cancels the session when the connection is lost
            self.gone.set()
            raise
        return "451 4.3.0 held for too long"


def test_a_cancelled_send_closes_the_connection_it_opened_for_the_message_in_flight() -> None:
    """Ctrl-C (or a service stopping) while a message goes out on a connection opened for it: that
    connection is closed at once, not left open until the process ends."""
    handler = HoldsData(held="user1@example.org")
    outcomes: list[Outcome] = []

    async def main(port: int) -> bool:
        # one connection per message: the second message goes out on a connection opened for it
        task = asyncio.create_task(SmtpSender(config(port, concurrency=1, max_per_connection=1))
                                   .deliver(jobs(0, 2), outcomes.append))
        assert await asyncio.to_thread(handler.holding.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.to_thread(handler.gone.wait, 5)  # while this event loop still runs

    with serving(handler) as port:
        closed = asyncio.run(main(port))
    assert closed and [o.issue_id for o in outcomes] == ["issue-0"]


def test_should_stop_lets_the_transaction_in_flight_finish_and_starts_no_other(smtp_server) -> None:  # noqa: ANN001
    recorder, port = smtp_server
    outcomes: list[Outcome] = []
    sender = SmtpSender(config(port, concurrency=1), should_stop=lambda: bool(outcomes))
    asyncio.run(sender.deliver(jobs(0, 5), outcomes.append))
    assert [o.issue_id for o in outcomes] == ["issue-0"] and len(recorder.messages) == 1


def test_the_circuit_breaker_halts_the_sender_for_the_rest_of_the_run() -> None:
    outcomes: list[Outcome] = []

    async def main() -> str | None:
        async with SmtpSender(config(free_port(), concurrency=1)) as sender:
            await sender.deliver(jobs(0, 8), outcomes.append)
            await sender.deliver(jobs(8, 3), outcomes.append)  # nothing more is tried
            return sender.halted

    halted = asyncio.run(main())
    assert len(outcomes) == CIRCUIT_BREAKER and all(o.connection and not o.permanent for o in outcomes)
    assert halted == f"stopped after {CIRCUIT_BREAKER} consecutive connection failures; the rest stays pending"


def test_a_utf8_mailbox_without_smtputf8_fails_alone() -> None:
    handler = Recorder()
    outcomes: list[Outcome] = []
    sent = [Job("a", "digest@example.org", "ñoño@example.org", b"Subject: a\r\n\r\nx\r\n"),
            Job("b", "digest@example.org", "b@example.org", b"Subject: b\r\n\r\nx\r\n")]
    with serving(handler, enable_SMTPUTF8=False) as port:
        asyncio.run(SmtpSender(config(port, concurrency=1)).deliver(sent, outcomes.append))
    assert [(o.issue_id, o.ok, o.permanent) for o in outcomes] == [("a", False, True), ("b", True, False)]
    assert outcomes[0].text.startswith("the server cannot take this message")
    assert [m[1] for m in handler.messages] == [["b@example.org"]]


def test_sender_for_an_outbox_writes_a_maildir(tmp_path: Path) -> None:
    outcomes: list[Outcome] = []

    async def main() -> None:
        sender = sender_for(config(free_port()), outbox=tmp_path / "out")
        assert isinstance(sender, MaildirSender)
        async with sender:
            await sender.deliver(jobs(0, 2), outcomes.append)
            await sender.deliver(jobs(2, 1), outcomes.append)

    asyncio.run(main())
    assert [o.ok for o in outcomes] == [True, True, True]
    stored = sorted(p.read_bytes() for p in (tmp_path / "out" / "new").iterdir())
    assert stored == sorted(j.message for j in jobs(0, 3))


def test_an_error_in_on_outcome_stops_every_connection_and_reaches_the_caller(
        counting: tuple[Counting, int]) -> None:
    handler, port = counting
    seen: list[str] = []

    def on_outcome(outcome: Outcome) -> None:
        seen.append(outcome.issue_id)
        raise KeyError("the ledger is gone")

    async def main() -> None:
        async with SmtpSender(config(port, concurrency=2)) as sender:
            await sender.deliver(jobs(0, 10), on_outcome)

    with pytest.raises(KeyError, match="the ledger is gone"):
        asyncio.run(main())
    assert 1 <= len(seen) <= 2 and len(handler.messages) <= 2  # at most what was in flight (2 connections)


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path, content: bytes | None) -> None:
    from newsletter.errors import ConfigError

    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    sender = SmtpSender(config(free_port(), tls="starttls", ca_file=str(ca)))
    with pytest.raises(ConfigError, match=f"smtp.ca_file {ca}: not a readable PEM bundle of CA certificates"):
        asyncio.run(sender.deliver(jobs(0, 1), lambda o: None))
