"""Cron schedules in a subscriber's time zone: validation and the latest/next firing around a time.

Numeric day-of-week values follow crontab (0 or 7 = Sunday); APScheduler 3 counts from Monday,
so numbers are rewritten to names before the trigger is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_WINDOWS = (timedelta(days=2), timedelta(days=9), timedelta(days=33), timedelta(days=367),
                   timedelta(days=366 * 8 + 2))


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone '{name}' (use an IANA name such as Europe/London)") from exc


def _crontab_days(field: str) -> str:
    def name(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if n > 7:
            raise ValueError(f"day of week {n} is out of range 0-7")
        return _DAYS[n]

    return re.sub(r"(?<![/\d])\d+", name, field)


@dataclass(frozen=True)
class Schedule:
    """A crontab expression (5 fields) in a time zone."""

    cron: str
    timezone: str

    def trigger(self) -> CronTrigger:
        zone = check_timezone(self.timezone)
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(
                f"cron '{self.cron}' needs 5 fields (minute hour day month weekday), got {len(fields)}"
            )
        fields[4] = _crontab_days(fields[4])
        try:
            return CronTrigger(minute=fields[0], hour=fields[1], day=fields[2], month=fields[3],
                               day_of_week=fields[4], timezone=zone)
        except ValueError as exc:
            raise ValueError(f"bad cron '{self.cron}': {exc}") from exc

    def check(self) -> None:
        self.trigger()

    def next_after(self, at: datetime) -> datetime | None:
        """The first firing strictly after `at`, in UTC."""
        t = self.trigger().get_next_fire_time(None, at + timedelta(microseconds=1))
        return t.astimezone(timezone.utc) if t else None

    def latest_at_or_before(self, at: datetime) -> datetime | None:
        """The latest firing at or before `at`, in UTC (None if it never fired in eight years)."""
        trigger = self.trigger()
        for window in _SEARCH_WINDOWS:
            lo = at - window
            first = trigger.get_next_fire_time(None, lo)
            if first is None or first > at:
                continue
            hi = at
            # next_fire(s) is monotone in s: bisect for the largest s whose next firing is <= at.
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                t = trigger.get_next_fire_time(None, mid)
                if t is not None and t <= at:
                    lo, first = mid, t
                else:
                    hi = mid
            return first.astimezone(timezone.utc)
        return None

    def period_before(self, slot: datetime) -> timedelta:
        """Time between `slot` and the firing before it (one schedule period)."""
        prev = self.latest_at_or_before(slot - timedelta(seconds=1))
        return slot - prev if prev else timedelta(days=1)
