"""SMTP delivery with aiosmtplib: reused connections, bounded concurrency, rate limit, strict TLS.

`tls: starttls` passes start_tls=True, so a server (or an attacker) that hides STARTTLS is an
error, never a silent plaintext session; AUTH is only ever sent over TLS.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence

import aiosmtplib

from newsletter.delivery import Job, Outcome
from newsletter.errors import ConfigError
from newsletter.models import SmtpConfig

CIRCUIT_BREAKER = 5  # consecutive connection failures that stop the run


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


class SmtpSender:
    def __init__(self, config: SmtpConfig, should_stop: Callable[[], bool] | None = None) -> None:
        check_security(config)
        self.config = config
        self.should_stop = should_stop
        self.ca_file = config.ca_file
        self.stopped = False
        self.consecutive_connection_failures = 0
        self.tripped = False

    def _client(self) -> aiosmtplib.SMTP:
        c = self.config
        context = ssl.create_default_context(cafile=self.ca_file) if c.tls != "none" else None
        return aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout,
            use_tls=c.tls == "tls", start_tls=True if c.tls == "starttls" else False,
            validate_certs=True, tls_context=context,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._client()
        await client.connect()
        if self.config.username and self.config.password:
            await client.login(self.config.username, self.config.password)
        return client

    async def deliver(self, jobs: Sequence[Job], report: Callable[[Outcome], None]) -> None:
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        limiter = _RateLimiter(self.config.rate_limit)
        workers = [asyncio.create_task(self._worker(queue, limiter, report))
                   for _ in range(max(1, min(self.config.concurrency, len(jobs))))]
        await asyncio.gather(*workers)

    def stop(self) -> None:
        """Finish in-flight transactions, start no new ones."""
        self.stopped = True

    def stopping(self) -> bool:
        return self.stopped or bool(self.should_stop and self.should_stop())

    async def _worker(self, queue: asyncio.Queue[Job], limiter: _RateLimiter,
                      report: Callable[[Outcome], None]) -> None:
        client: aiosmtplib.SMTP | None = None
        sent_on_connection = 0
        try:
            while not queue.empty() and not self.stopping() and not self.tripped:
                job = queue.get_nowait()
                await limiter.wait()
                if client is None or not client.is_connected or sent_on_connection >= self.config.max_per_connection:
                    await _quit(client)
                    client, sent_on_connection = None, 0
                    try:
                        client = await self._connect()
                    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                        report(self._connection_failure(job, exc, after_data=False))
                        client = None
                        continue
                outcome = await self._send_one(client, job)
                sent_on_connection += 1
                if outcome.connection:
                    self._count_connection_failure()
                    await _quit(client)
                    client = None
                else:
                    self.consecutive_connection_failures = 0
                    if not outcome.ok:
                        await _reset(client)  # next transaction starts clean
                report(outcome)
        finally:
            await _quit(client)

    def _count_connection_failure(self) -> None:
        self.consecutive_connection_failures += 1
        if self.consecutive_connection_failures >= CIRCUIT_BREAKER:
            self.tripped = True

    def _connection_failure(self, job: Job, exc: BaseException, after_data: bool) -> Outcome:
        self._count_connection_failure()
        text = _describe(exc)
        if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc):
            text = (f"{self.config.host}:{self.config.port} does not offer STARTTLS; "
                    "refusing to send in plaintext (tls: starttls)")
            return Outcome(job.issue_id, job.recipient, False, None, text, permanent=False, connection=True)
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 500 <= code < 600:
            return Outcome(job.issue_id, job.recipient, False, code, text, connection=True)
        return Outcome(job.issue_id, job.recipient, False, code if isinstance(code, int) else None,
                       text, possible_duplicate=after_data, connection=True)

    async def _send_one(self, client: aiosmtplib.SMTP, job: Job) -> Outcome:
        try:
            # A UTF-8 mailbox needs SMTPUTF8 (RFC 6531); aiosmtplib refuses clearly if the server lacks it.
            options = [] if (job.sender + job.rcpt).isascii() else ["SMTPUTF8"]
            errors, reply = await client.sendmail(job.sender, [job.rcpt], job.message, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused else 550
            return Outcome(job.issue_id, job.recipient, False, code, _describe(refused or exc),
                           permanent=code >= 500)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code in (421,):  # service closing: a connection-level failure
                return Outcome(job.issue_id, job.recipient, False, exc.code, _describe(exc), connection=True)
            return Outcome(job.issue_id, job.recipient, False, exc.code, _describe(exc),
                           permanent=exc.code >= 500)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                asyncio.TimeoutError, OSError) as exc:
            # The data may have reached the server before the line dropped: retry with the same
            # Message-ID and count it as a possible duplicate.
            return Outcome(job.issue_id, job.recipient, False, None, _describe(exc),
                           possible_duplicate=True, connection=True)
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. a UTF-8 address and no SMTPUTF8
            return Outcome(job.issue_id, job.recipient, False, None, f"the server cannot take this "
                           f"message: {_describe(exc)}", permanent=True)
        except aiosmtplib.SMTPException as exc:
            return Outcome(job.issue_id, job.recipient, False, None, _describe(exc), connection=True)
        if errors:
            code, text = next(iter(errors.values()))
            return Outcome(job.issue_id, job.recipient, False, code, text, permanent=code >= 500)
        return Outcome(job.issue_id, job.recipient, True, 250, str(reply))


def _describe(exc: object) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code} {message}" if code else str(message)


async def _quit(client: aiosmtplib.SMTP | None) -> None:
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
