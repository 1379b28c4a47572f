"""In-run retries (delivery/retry.py): the policy with an injected clock and sleep and a scripted
Sender (no server needed), then once against a real aiosmtpd answering 451, then 250."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from types import TracebackType

import pytest

from conftest import Recorder
from newsletter.delivery import Job, OnOutcome, Outcome
from newsletter.delivery.retry import Retrying, backoff
from newsletter.delivery.smtp import SmtpSender
from newsletter.models import SmtpConfig


@dataclass
class Scripted:
    """A Sender whose replies are written in advance: per issue id, one reply code per attempt
    (the last one repeats). Records every batch it was handed and whether it is open."""

    replies: dict[str, list[int]] = field(default_factory=dict)
    batches: list[list[Job]] = field(default_factory=list)
    halted: str | None = None
    open: bool = False

    async def __aenter__(self) -> Scripted:
        self.open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.open = False

    async def deliver(self, jobs: Sequence[Job], on_outcome: OnOutcome) -> None:
        self.batches.append(list(jobs))
        for job in jobs:
            codes = self.replies.get(job.issue_id, [250])
            code = codes.pop(0) if len(codes) > 1 else codes[0]
            on_outcome(Outcome(job.issue_id, job.recipient, code == 250, code, f"{code} scripted",
                               permanent=code >= 500))


class Clock:
    """Time that moves only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def job(name: str) -> Job:
    return Job(name, "digest@example.org", f"{name}@example.org",
               f"Message-ID: <{name}@example.org>\r\n\r\nx\r\n".encode())


def retrying(inner: Scripted, clock: Clock, retries: int = 2, stop: bool = False) -> Retrying:
    return Retrying(inner, retries, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5, should_stop=lambda: stop)


def names(batch: list[Job]) -> list[str]:
    return [j.issue_id for j in batch]


def test_backoff_doubles_and_jitter_spreads_it() -> None:
    assert [backoff(n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [backoff(n, 0.999) for n in (1, 2, 3)] == pytest.approx([0.9995, 1.999, 3.998])


def test_a_transient_failure_is_retried_with_the_same_job_until_it_succeeds() -> None:
    inner, clock = Scripted({"a": [451, 451, 250]}), Clock()
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with retrying(inner, clock) as sender:
            await sender.deliver([job("a"), job("b")], outcomes.append)
        assert not inner.open

    asyncio.run(main())
    assert [(o.issue_id, o.code, o.retry_in) for o in outcomes] == [
        ("a", 451, 0.75), ("b", 250, None), ("a", 451, 1.5), ("a", 250, None)]
    assert clock.slept == [0.75, 1.5]
    assert [names(b) for b in inner.batches] == [["a", "b"], ["a"], ["a"]]
    assert inner.batches[1][0] is inner.batches[0][0]  # the same bytes, so the same Message-ID


def test_retries_run_out_and_the_job_stays_pending() -> None:
    inner, clock = Scripted({"a": [421]}), Clock()
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with retrying(inner, clock, retries=1) as sender:
            await sender.deliver([job("a")], outcomes.append)

    asyncio.run(main())
    assert [(o.code, o.retry_in) for o in outcomes] == [(421, 0.75), (421, None)]


def test_a_permanent_failure_is_never_retried() -> None:
    inner, clock = Scripted({"a": [550]}), Clock()
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with retrying(inner, clock) as sender:
            await sender.deliver([job("a")], outcomes.append)

    asyncio.run(main())
    assert [(o.code, o.permanent, o.retry_in) for o in outcomes] == [(550, True, None)]
    assert clock.slept == [] and len(inner.batches) == 1


def test_a_due_retry_joins_the_next_batch_and_one_not_yet_due_waits() -> None:
    inner, clock = Scripted({"a": [451, 250], "c": [451, 250]}), Clock()
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with retrying(inner, clock) as sender:
            await sender.deliver([job("a")], outcomes.append)
            clock.now += 2.0  # building the next batch took longer than a's backoff
            await sender.deliver([job("b"), job("c")], outcomes.append)
            await sender.deliver([job("d")], outcomes.append)  # c is not due yet: not here
        # leaving `async with` waits for c and delivers it

    asyncio.run(main())
    assert [names(b) for b in inner.batches] == [["a"], ["a", "b", "c"], ["d"], ["c"]]
    assert clock.slept == [0.75]
    assert all(o.ok for o in outcomes if o.retry_in is None)


def test_a_stopping_run_leaves_the_retries_pending() -> None:
    inner, clock = Scripted({"a": [451, 250]}), Clock()
    outcomes: list[Outcome] = []

    async def main() -> None:
        async with retrying(inner, clock, stop=True) as sender:
            await sender.deliver([job("a")], outcomes.append)

    asyncio.run(main())
    assert [(o.code, o.retry_in) for o in outcomes] == [(451, 0.75)]
    assert clock.slept == [] and len(inner.batches) == 1 and not inner.open


def test_a_halted_sender_gets_no_retries() -> None:
    inner, clock = Scripted({"a": [451, 250]}), Clock()

    async def main() -> None:
        async with retrying(inner, clock) as sender:
            await sender.deliver([job("a")], lambda o: None)
            inner.halted = "stopped after 5 consecutive connection failures; the rest stays pending"
            assert sender.halted == inner.halted

    asyncio.run(main())
    assert len(inner.batches) == 1 and clock.slept == []


def test_an_error_inside_the_run_skips_the_retries_and_still_closes() -> None:
    inner, clock = Scripted({"a": [451, 250]}), Clock()

    async def main() -> None:
        async with retrying(inner, clock) as sender:
            await sender.deliver([job("a")], lambda o: None)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert len(inner.batches) == 1 and not inner.open


def test_451_then_250_from_a_real_server_is_delivered_once_with_the_same_message_id(smtp_server) -> None:  # noqa: ANN001
    recorder: Recorder = smtp_server[0]
    recorder.rcpt_replies["ada@example.org"] = ["451 4.3.0 greylisted, try again", "250 OK"]
    clock = Clock()
    outcomes: list[Outcome] = []
    ada = Job("ada-1", "digest@example.org", "ada@example.org",
              b"Message-ID: <ada-1@example.org>\r\nSubject: hi\r\n\r\nbody\r\n")
    smtp = SmtpConfig(host="127.0.0.1", port=smtp_server[1], tls="none", timeout=5, retries=2)

    async def main() -> None:
        async with Retrying(SmtpSender(smtp), smtp.retries, clock=clock, sleep=clock.sleep,
                            jitter=lambda: 0.0) as sender:
            await sender.deliver([ada], outcomes.append)

    asyncio.run(main())
    assert [(o.ok, o.code, o.permanent, o.retry_in) for o in outcomes] == [
        (False, 451, False, 0.5), (True, 250, False, None)]
    assert outcomes[0].text == "451 4.3.0 greylisted, try again"
    assert clock.slept == [0.5]
    (message,) = recorder.messages
    assert message[1] == ["ada@example.org"]
    assert message_from_bytes(message[2], policy=policy.default)["Message-ID"] == "<ada-1@example.org>"


def test_a_retry_whose_claim_was_lost_meanwhile_is_dropped() -> None:
    inner, clock = Scripted({"a": [451, 250], "b": [451, 250]}), Clock()
    asked: list[list[str]] = []

    def held(ids: Sequence[str]) -> set[str]:
        asked.append(list(ids))
        return {"b"}  # another process took over a's claim while its retry waited

    async def main() -> None:
        async with Retrying(inner, 2, held=held, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5) as sender:
            await sender.deliver([job("a"), job("b")], lambda o: None)

    asyncio.run(main())
    assert asked == [["a", "b"]]
    assert [names(b) for b in inner.batches] == [["a", "b"], ["b"]]
