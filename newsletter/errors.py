"""The exception tree: the only place exceptions are defined. The CLI catches NewsletterError."""

from __future__ import annotations

from typing import ClassVar


class NewsletterError(Exception):
    """Root of every error a user can act on; carries the process exit code."""

    exit_code: ClassVar[int] = 1


class ConfigError(NewsletterError):
    """subscribers.yaml (or a command line) is wrong; message names file:line:col."""

    exit_code = 2

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class QuerySyntaxError(ConfigError):
    """A profile query does not parse; `column` is 1-based within the query string."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.reason = message
        self.column = column


class SourceError(NewsletterError):
    """A source could not be read or parsed; names the source and its URL or path."""


class ItemError(SourceError):
    """One item of a source is unusable (wrong type, out of range, no visible title).

    Parsers catch it per item: the item is skipped and named in the ingest report; the rest goes on.
    """


class RateLimited(SourceError):
    """The server answered 429 (or said no requests are left); `retry_after` seconds, when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StateError(NewsletterError):
    """The SQLite state file cannot be opened or is not ours."""


class RenderError(NewsletterError):
    """A template failed; names the template file and line."""


class DeliveryError(NewsletterError):
    """An SMTP or outbox delivery failed; names the recipient and the server's reply."""

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class PartialDeliveryError(NewsletterError):
    """Some deliveries of a run failed; the rest went out."""

    exit_code = 3
