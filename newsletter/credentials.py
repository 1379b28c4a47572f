"""Secrets, read once from the environment at the configuration edge and handed to every command
(`send`, `run`, `serve`, `preview`) the same way. They never live in YAML, logs or previews.

- NEWSLETTER_SECRET signs links (unsubscribe, ...); NEWSLETTER_SECRET_PREVIOUS (separated by commas or spaces)
  keeps verifying links signed with rotated-out secrets.
- NEWSLETTER_DKIM_KEY_FILE names the PEM private key of the DKIM selector.
- The SMTP password (NEWSLETTER_SMTP_PASSWORD) is read by the configuration loader with the rest of
  the `smtp:` settings it overrides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from newsletter.errors import ConfigError

MIN_SECRET = 16  # characters: a short secret can be guessed offline from one signed link
# Signs the links of previews and dry runs: never the production secret, so a preview link does
# not work against the real service.
PREVIEW_SECRET = "preview-only: set NEWSLETTER_SECRET to sign real unsubscribe links"


@dataclass(frozen=True)
class Secrets:
    link_secret: str | None = field(default=None, repr=False)
    previous: tuple[str, ...] = field(default=(), repr=False)
    dkim_key: bytes | None = field(default=None, repr=False)
    previous_until: datetime | None = None  # after this, links signed with `previous` stop working

    def verifying_at(self, now: datetime) -> tuple[str, ...]:
        """Secrets accepted when verifying a link at `now`: the current one first, then the rotated-out
        ones until NEWSLETTER_SECRET_PREVIOUS_UNTIL (if set)."""
        current = (self.link_secret,) if self.link_secret else ()
        if self.previous_until is not None and now >= self.previous_until:
            return current
        return current + self.previous

    @property
    def verifying(self) -> tuple[str, ...]:
        return self.verifying_at(datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return (f"Secrets(link_secret={'***' if self.link_secret else None}, previous={len(self.previous)}, "
                f"dkim_key={'***' if self.dkim_key else None})")


def _checked(name: str, value: str) -> str:
    if len(value) < MIN_SECRET:
        raise ConfigError(f"{name} is too short ({len(value)} characters): use at least {MIN_SECRET} random "
                          "characters, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return value


def read(env: Mapping[str, str]) -> Secrets:
    """Read and check every secret once; raises ConfigError naming the variable."""
    raw = env.get("NEWSLETTER_SECRET") or None
    secret = _checked("NEWSLETTER_SECRET", raw) if raw else None
    previous = tuple(_checked("NEWSLETTER_SECRET_PREVIOUS", s)
                     for s in re.split(r"[,\s]+", env.get("NEWSLETTER_SECRET_PREVIOUS") or "") if s)
    key = None
    path = env.get("NEWSLETTER_DKIM_KEY_FILE")
    if path:
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE: cannot read {path}: {exc.strerror}") from exc
    return Secrets(secret, previous, key, _until(env.get("NEWSLETTER_SECRET_PREVIOUS_UNTIL", "").strip()))


def _until(text: str) -> datetime | None:
    """NEWSLETTER_SECRET_PREVIOUS_UNTIL: a day (links signed with the old secrets work through its end,
    UTC) or a date-time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(), timezone.utc)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"NEWSLETTER_SECRET_PREVIOUS_UNTIL: '{text}' is not a date (YYYY-MM-DD) or an ISO "
                          "date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
