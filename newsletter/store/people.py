"""Who is subscribed, as the store holds it: each subscriber's state (unsubscribed, paused,
bounced) and the store-held subscribers themselves (`subscribers import`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from newsletter.errors import StateError
from newsletter.models import Subscriber
from newsletter.store import rows as R
from newsletter.store.queries import Queries
from newsletter.store.rows import StateRow, chunks, marks, upsert
from newsletter.store.schema import TABLES

_SUBSCRIBER_UPSERT = upsert("subscribers", "email")


class People(Queries):
    # --- subscriber state --------------------------------------------------------------------

    def states(self, emails: Sequence[str] | None = None) -> dict[str, StateRow]:
        """The state rows of these subscribers (all when None), in bulk."""
        cols = "email, unsubscribed_at, hard_failures, paused_reason, paused_at, bounced_at"
        if emails is None:
            return {r[0]: R.state(r) for r in self._q(f"SELECT {cols} FROM subscriber_state")}
        out: dict[str, StateRow] = {}
        for chunk in chunks(list(emails)):
            for r in self._q(f"SELECT {cols} FROM subscriber_state WHERE email IN ({marks(len(chunk))})", list(chunk)):
                out[r[0]] = R.state(r)
        return out

    def set_unsubscribed(self, email: str, now: datetime) -> None:
        """One commit: the subscriber gets nothing from now on."""
        with self.transaction():
            self._q("INSERT INTO subscriber_state (email, unsubscribed_at) VALUES (?, ?) ON CONFLICT (email) "
                    "DO UPDATE SET unsubscribed_at=coalesce(subscriber_state.unsubscribed_at, excluded.unsubscribed_at)",
                    (email, R.ts(now)))

    def set_paused(self, email: str, reason: str | None, now: datetime) -> None:
        """Pause with a reason, or (None) resume: clears pauses, failures and an unsubscribe."""
        with self.transaction():
            if reason is None:
                self._q("UPDATE subscriber_state SET paused_reason=NULL, paused_at=NULL, paused_until=NULL, "
                        "hard_failures=0, unsubscribed_at=NULL, bounced_at=NULL WHERE email=?", (email,))
            else:  # a pause with no end: any earlier end date goes with the earlier pause
                self._q("INSERT INTO subscriber_state (email, paused_reason, paused_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (email) DO UPDATE SET paused_reason=excluded.paused_reason, "
                        "paused_at=excluded.paused_at, paused_until=NULL", (email, reason, R.ts(now)))

    def unsubscribed(self) -> set[str]:
        return {r[0] for r in self._q("SELECT email FROM subscriber_state WHERE unsubscribed_at IS NOT NULL")}

    # --- store-held subscribers ------------------------------------------------------------------

    def add_subscribers(self, subscribers: Iterable[Subscriber], now: datetime, *, replace_existing: bool = False) -> int:
        """Insert store-held subscribers in one transaction; returns how many were written."""
        sql = _SUBSCRIBER_UPSERT if replace_existing else f"INSERT INTO subscribers VALUES ({marks(len(TABLES['subscribers']))})"
        rows = [R.subscriber_values(s, now) for s in subscribers]
        try:
            with self.transaction():
                self._many(sql, rows)
        except self.integrity_errors as exc:
            raise StateError(f"a subscriber is already in the store ({str(exc).splitlines()[0]})") from None
        return len(rows)

    def update_subscriber(self, subscriber: Subscriber) -> None:
        with self.transaction():
            row = self._q("SELECT added_at FROM subscribers WHERE email=?", (subscriber.email,)).fetchone()
            if row is None:
                raise StateError(f"no subscriber '{subscriber.email}' in the store")
            self._q(_SUBSCRIBER_UPSERT, R.subscriber_values(subscriber, R.dt(row[0]) or datetime.now(timezone.utc)))

    def remove_subscriber(self, email: str) -> bool:
        with self.transaction():
            cur = self._q("DELETE FROM subscribers WHERE email=?", (email,))
        return int(cur.rowcount) == 1

    def subscriber(self, email: str) -> Subscriber | None:
        row = self._q("SELECT * FROM subscribers WHERE email=?", (email,)).fetchone()
        return R.subscriber(row) if row else None

    def subscriber_count(self) -> int:
        return self.count("subscribers")

    def subscribers_page(self, after: str = "", limit: int = 1000) -> list[Subscriber]:
        """Store-held subscribers in address order, `limit` at a time (keyset pagination)."""
        rows = self._q("SELECT * FROM subscribers WHERE email > ? ORDER BY email LIMIT ?", (after, limit))
        return [R.subscriber(r) for r in rows]

    def last_of_page(self, after: str = "", limit: int = 1000) -> str | None:
        """The last address of the page `subscribers_page(after, limit)` reads, without reading the
        page (a build worker steps over the other workers' batches so)."""
        row = self._q("SELECT email FROM subscribers WHERE email > ? ORDER BY email LIMIT 1 OFFSET ?",
                      (after, limit - 1)).fetchone()
        if row is not None:
            return str(row[0])
        last = self._q("SELECT email FROM subscribers WHERE email > ? ORDER BY email DESC LIMIT 1", (after,)).fetchone()
        return str(last[0]) if last is not None else None

    def known(self, emails: Sequence[str]) -> set[str]:
        """Which of these addresses are store-held subscribers."""
        out: set[str] = set()
        for chunk in chunks(list(emails)):
            out.update(r[0] for r in self._q(f"SELECT email FROM subscribers WHERE email IN ({marks(len(chunk))})",
                                             list(chunk)))
        return out

    def schedules(self) -> set[tuple[str, str]]:
        """The distinct (cron, time zone) pairs of store-held subscribers."""
        return {(r[0], r[1]) for r in self._q("SELECT DISTINCT schedule, timezone FROM subscribers")}
