"""SMTP delivery with aiosmtplib: a pool of `concurrency` connections kept open across batches,
`max_per_connection` messages each, an optional rate limit, strict TLS, and a circuit breaker.

`tls: starttls` passes start_tls=True, so a server (or an attacker) that hides STARTTLS is an
error, never a silent plaintext session; certificates are verified (`ca_file` or the system's);
AUTH is only ever sent over TLS.

Speed: one transaction is MAIL, RCPT, DATA and the message, sent with aiosmtplib's
`execute_command` and its protocol's `write`/`read_response`; the message goes out as it is when it
is already in wire form (wire.py), so nothing re-encodes, re-scans or parses it per message.
aiosmtplib has no PIPELINING (RFC 2920), so a transaction is four round trips.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import aiosmtplib
from aiosmtplib.email import quote_address

from newsletter.delivery import Job, OnOutcome, Outcome
from newsletter.delivery.wire import data_payload
from newsletter.errors import ConfigError
from newsletter.models import SmtpConfig

CIRCUIT_BREAKER = 5  # consecutive connection failures that stop the run
_LINE_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, asyncio.TimeoutError, OSError)


def check_security(config: SmtpConfig) -> None:
    if config.tls == "none" and config.username and config.password:
        raise ConfigError(
            "smtp: refusing to log in over plaintext (tls: none); use tls: starttls or tls: tls, "
            "or drop the username for a local relay"
        )


class _RateLimiter:
    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.interval


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    size: bool  # the server announced SIZE (RFC 1870): it may refuse a too-large message at MAIL
    smtputf8: bool
    sent: int = 0

    @property
    def usable(self) -> bool:
        return self.client.is_connected


class _Reply(Exception):
    """A reply other than the one a step expects; ends the transaction (never leaves this module)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


class SmtpSender:
    """The `Sender` for an SMTP relay. Open it once per run (`async with`); `deliver` can then be
    called for batch after batch over the same connections. Called without `async with`, each
    `deliver` opens and closes its own connections."""

    def __init__(self, config: SmtpConfig, should_stop: Callable[[], bool] | None = None) -> None:
        check_security(config)
        self.config = config
        self.should_stop = should_stop
        self.ca_file = config.ca_file
        self.stopped = False
        self.consecutive_connection_failures = 0
        self.tripped = False
        self._idle: list[_Connection] = []
        self._open = False
        self._limiter: _RateLimiter | None = None
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._senders: dict[str, str] = {}

    # --- the Sender shape ------------------------------------------------------------------------

    @property
    def halted(self) -> str | None:
        if not self.tripped:
            return None
        return (f"stopped after {self.consecutive_connection_failures} consecutive connection failures; "
                "the rest stays pending")

    async def __aenter__(self) -> SmtpSender:
        c = self.config
        if c.tls != "none":
            try:
                self._tls = ssl.create_default_context(cafile=self.ca_file)  # verifies certificates
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"smtp.ca_file {self.ca_file}: not a readable PEM bundle of CA "
                                  f"certificates ({exc}); fix the path or drop ca_file to trust the system's") from exc
        self._local_hostname = await asyncio.to_thread(socket.getfqdn)  # once, not per connection
        self._limiter = _RateLimiter(c.rate_limit)
        self._open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._open = False
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn) for conn in idle))

    async def deliver(self, jobs: Sequence[Job], on_outcome: OnOutcome) -> None:
        if not self._open:
            async with self:
                await self.deliver(jobs, on_outcome)
            return
        queue = iter(jobs)
        workers = [asyncio.create_task(self._worker(queue, on_outcome))
                   for _ in range(max(1, min(self.config.concurrency, len(jobs))))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            # on_outcome failed (or the run was cancelled): no worker may go on sending
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    def stop(self) -> None:
        """Finish in-flight transactions, start no new ones."""
        self.stopped = True

    def stopping(self) -> bool:
        return self.stopped or bool(self.should_stop and self.should_stop())

    # --- connections ------------------------------------------------------------------------------

    async def _worker(self, queue: Iterator[Job], on_outcome: OnOutcome) -> None:
        conn = self._idle.pop() if self._idle else None
        try:
            while not self.stopping() and not self.tripped:
                job = next(queue, None)
                if job is None:
                    break
                assert self._limiter is not None
                await self._limiter.wait()
                outcome, conn = await self._deliver_one(conn, job)
                if outcome.connection:
                    self._count_connection_failure()
                else:
                    self.consecutive_connection_failures = 0
                on_outcome(outcome)
        except BaseException:
            # cancelled (Ctrl-C) or failed, perhaps in the middle of a transaction: the connection's
            # state is unknown (a QUIT sent in the middle of DATA would be read as message text and
            # wait for the timeout), so it is closed, never reused
            if conn is not None:
                conn.client.close()
            raise
        if conn is not None and conn.usable and self._open:
            self._idle.append(conn)
        else:
            await _quit(conn)

    async def _deliver_one(self, conn: _Connection | None, job: Job) -> tuple[Outcome, _Connection | None]:
        given = conn
        try:
            for _ in range(2):
                reused = conn is not None and conn.usable and conn.sent < self.config.max_per_connection
                if not reused:
                    await _quit(conn)
                    conn = None
                    try:
                        conn = await self._connect()
                    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                        return self._connection_failure(job, exc), None
                assert conn is not None
                outcome, step = await self._transaction(conn, job)
                conn.sent += 1
                if not conn.usable:
                    conn = None
                if outcome.connection and reused and step == "mail":
                    continue  # the server closed a connection that sat idle: once more on a fresh one
                return outcome, conn
            return outcome, conn
        except BaseException:
            # cancelled (or failed) on a connection opened here, which the caller does not hold:
            # closed like the caller closes its own (see `_worker`)
            if conn is not None and conn is not given:
                conn.client.close()
            raise

    async def _connect(self) -> _Connection:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout, local_hostname=self._local_hostname,
            use_tls=c.tls == "tls", start_tls=True if c.tls == "starttls" else False,
            validate_certs=True, tls_context=self._tls,
        )
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:  # a plaintext session: learn the extensions now
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if c.username and c.password:
                await client.login(c.username, c.password)
        except BaseException:
            client.close()
            raise
        return _Connection(client, client.supports_extension("size"), client.supports_extension("smtputf8"))

    def _count_connection_failure(self) -> None:
        self.consecutive_connection_failures += 1
        if self.consecutive_connection_failures >= CIRCUIT_BREAKER:
            self.tripped = True

    def _connection_failure(self, job: Job, exc: BaseException) -> Outcome:
        text = _describe(exc)
        if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc):
            text = (f"{self.config.host}:{self.config.port} does not offer STARTTLS; "
                    "refusing to send in plaintext (tls: starttls)")
            return Outcome(job.issue_id, job.recipient, False, None, text, connection=True)
        code = getattr(exc, "code", None)
        return Outcome(job.issue_id, job.recipient, False, code if isinstance(code, int) else None, text,
                       connection=True)

    # --- one transaction --------------------------------------------------------------------------

    def _quoted_sender(self, address: str) -> str:
        quoted = self._senders.get(address)
        if quoted is None:  # a run has one sender: quoted (and checked) once
            quoted = self._senders[address] = quote_address(address)
        return quoted

    async def _transaction(self, conn: _Connection, job: Job) -> tuple[Outcome, str]:
        """MAIL, RCPT, DATA, the message. Returns the outcome and the step it ended at: "mail",
        "rcpt", "data" (before the message), "message" (written: the server may have it)."""
        client = conn.client
        rcpt = job.rcpt
        utf8 = not (job.sender.isascii() and rcpt.isascii())
        if utf8 and not conn.smtputf8:
            return Outcome(job.issue_id, job.recipient, False, None, "the server cannot take this message: "
                           "a UTF-8 mailbox needs SMTPUTF8 and the server does not offer it",
                           permanent=True), "mail"
        encoding = "utf-8" if utf8 else "ascii"
        payload = data_payload(job.message)
        options = [b"SIZE=%d" % (len(payload) - 3)] if conn.size else []
        if utf8:
            options.append(b"SMTPUTF8")
        step = "mail"
        try:
            # aiosmtplib's quote_address refuses anything that could smuggle ESMTP options
            sender = self._quoted_sender(job.sender).encode(encoding)
            _expect(await client.execute_command(b"MAIL", b"FROM:" + sender, *options), 250)
            step = "rcpt"
            _expect(await client.execute_command(b"RCPT", b"TO:" + _quoted(rcpt).encode(encoding)), 250, 251)
            step = "data"
            _expect(await client.execute_command(b"DATA"), 354)
            protocol = client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(payload)
            step = "message"
            accepted = await protocol.read_response(timeout=self.config.timeout)
            _expect(accepted, 250)
            return Outcome(job.issue_id, job.recipient, True, 250, f"250 {accepted.message}"), step
        except ValueError as exc:  # an address SMTP cannot carry: this message only
            if step != "mail":
                await _reset(client)
            return Outcome(job.issue_id, job.recipient, False, None, f"not a mailbox SMTP can carry: {exc}",
                           permanent=True), step
        except _Reply as reply:
            if reply.code == 421 or reply.code < 400:  # closing, or a reply that makes no sense here
                client.close()
                return Outcome(job.issue_id, job.recipient, False, reply.code, str(reply), connection=True), step
            if step != "message":
                await _reset(client)  # the next transaction starts clean
            return Outcome(job.issue_id, job.recipient, False, reply.code, str(reply),
                           permanent=reply.code >= 500), step
        except (*_LINE_ERRORS, aiosmtplib.SMTPException) as exc:
            # The message may have reached the server before the line dropped: it is retried with
            # the same Message-ID and counted as a possible duplicate.
            client.close()
            return Outcome(job.issue_id, job.recipient, False, None, _describe(exc),
                           possible_duplicate=step == "message", connection=True), step


_PLAIN_MAILBOX = re.compile(r"[^\s\x00-\x1f\x7f<>\"()\\,;:\[\]@]+@[^\s\x00-\x1f\x7f<>\"()\\,;:\[\]@]+")


def _quoted(address: str) -> str:
    """`<address>`: a plain local@domain as it is (the config edge validated it); anything else
    through aiosmtplib's parser, which refuses what could smuggle ESMTP options (ValueError)."""
    if _PLAIN_MAILBOX.fullmatch(address):
        return f"<{address}>"
    return quote_address(address)


def _expect(response: aiosmtplib.SMTPResponse, *codes: int) -> None:
    if response.code not in codes:
        raise _Reply(response.code, response.message)


def _describe(exc: object) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code} {message}" if code else str(message)


async def _quit(conn: _Connection | aiosmtplib.SMTP | None) -> None:
    client = conn.client if isinstance(conn, _Connection) else conn
    if client is None or not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
        client.close()


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
        client.close()
