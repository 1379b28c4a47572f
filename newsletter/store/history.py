"""Reads of the ledger's history, for the commands that explain and report it (`explain`, replays,
`status`): a subscriber's issues without their message bytes, the issues around a paper's arrival,
which issues carried which papers, and the queue per worker. Sending reads the ledger in base.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from newsletter.store import rows as R
from newsletter.store.queries import Queries
from newsletter.store.rows import IssueRow, chunks, marks

_HEADS = "i.id, i.subscriber, i.slot, i.built_at, i.status, i.entry_count, i.last_error, i.sent_at, i.dropped"


def _head(r: Sequence[Any]) -> IssueRow:
    return IssueRow(r[0], r[1], R.dt(r[2]), R.dt(r[3]), r[4], None, None, None, r[5], 0, r[6], None, None,  # type: ignore[arg-type]
                    R.dt(r[7]), False, dropped=r[8] or 0)


class History(Queries):
    def issue_heads_of(self, subscribers: Sequence[str]) -> dict[str, list[IssueRow]]:
        """Every issue of these subscribers, oldest slot first, without message, subject and retry
        details (`explain` reads tens of thousands)."""
        out: dict[str, list[IssueRow]] = {}
        for chunk in chunks(list(subscribers)):
            for r in self._q(f"SELECT {_HEADS} FROM issues i WHERE i.subscriber IN ({marks(len(chunk))}) "
                             "ORDER BY i.slot", list(chunk)):
                row = _head(r)
                out.setdefault(row.subscriber, []).append(row)
        return out

    def issues_around(self, subscribers: Sequence[str], when: datetime
                      ) -> dict[str, tuple[datetime | None, IssueRow | None]]:
        """Per subscriber with issues, what decides where a paper first seen at `when` could go: when
        the last issue before `when` was built (it opens the next window) and the next issue (as an
        `issue_heads_of` row; the first issue when none was built before). Two index seeks on
        (subscriber, slot) per subscriber, one statement per chunk: an issue is never built before
        its slot, and a subscriber's issues are built in slot order."""
        at = R.ts(when)
        out: dict[str, tuple[datetime | None, IssueRow | None]] = {}
        for chunk in chunks(list(subscribers)):
            rows = self._q(
                f"WITH s(email) AS (VALUES {', '.join('(?)' for _ in chunk)}), "
                "p AS (SELECT email, (SELECT j.slot FROM issues j WHERE j.subscriber = s.email AND j.slot < ? "
                "AND j.built_at < ? ORDER BY j.slot DESC LIMIT 1) AS ps FROM s) "
                f"SELECT p.email, (SELECT b.built_at FROM issues b WHERE b.subscriber = p.email AND b.slot = p.ps), "
                f"{_HEADS} FROM p LEFT JOIN issues i ON i.subscriber = p.email AND i.slot = (SELECT k.slot FROM "
                "issues k WHERE k.subscriber = p.email AND k.slot > coalesce(p.ps, '') ORDER BY k.slot LIMIT 1)",
                [*chunk, at, at])
            for r in rows:
                if r[1] is not None or r[2] is not None:
                    out[r[0]] = (R.dt(r[1]), _head(r[2:]) if r[2] is not None else None)
        return out

    def issue_heads(self, issue_ids: Sequence[str]) -> list[IssueRow]:
        """These issues as `issue_heads_of` rows (unknown ids are left out)."""
        out: list[IssueRow] = []
        for chunk in chunks(list(issue_ids)):
            out.extend(map(_head, self._q(f"SELECT {_HEADS} FROM issues i WHERE i.id IN ({marks(len(chunk))})",
                                          list(chunk))))
        return out

    def carriers(self, entry_ids: Sequence[str]) -> dict[str, set[str]]:
        """Per issue that carried any of these papers, which of them (for every subscriber at once)."""
        out: dict[str, set[str]] = {}
        for ids in chunks(list(entry_ids)):
            for issue_id, entry_id in self._q(f"SELECT issue_id, entry_id FROM issue_entries WHERE entry_id IN "
                                              f"({marks(len(ids))})", list(ids)):
                out.setdefault(issue_id, set()).add(entry_id)
        return out

    def issue_entry_ids(self, issue_ids: Sequence[str]) -> dict[str, set[str]]:
        """The papers each of these issues carried (those its email showed), in bulk."""
        out: dict[str, set[str]] = {}
        for chunk in chunks(list(issue_ids)):
            for issue_id, entry_id in self._q("SELECT issue_id, entry_id FROM issue_entries WHERE issue_id IN "
                                              f"({marks(len(chunk))})", list(chunk)):
                out.setdefault(issue_id, set()).add(entry_id)
        return out

    def issues(self, status: str | None = None) -> list[IssueRow]:
        """The issues (with this status), without their message bytes (`status` lists every pending one)."""
        sql, args = f"SELECT {R.LEAN_COLUMNS} FROM issues", []
        if status:
            sql += " WHERE status=?"
            args.append(status)
        return [R.issue(r) for r in self._q(sql + " ORDER BY slot, subscriber", args)]

    def mean_size(self, status: str = "sent") -> float:
        """The mean message size in bytes of the issues with this status (0 when none)."""
        row = self._q("SELECT avg(size) FROM issues WHERE status=? AND size IS NOT NULL", (status,)).fetchone()
        return float(row[0] or 0)

    def worker_leases(self) -> dict[str, tuple[int, datetime | None]]:
        """Per worker holding pending issues: how many, and its latest lease end."""
        rows = self._q("SELECT claimed_by, count(*), max(claim_until) FROM issues WHERE status='pending' "
                       "AND claimed_by IS NOT NULL GROUP BY claimed_by")
        return {owner: (int(n), R.dt(until)) for owner, n, until in rows}

    def claims(self) -> dict[str, int]:
        """Pending issues per claiming worker (unclaimed under '')."""
        rows = self._q("SELECT coalesce(claimed_by, ''), count(*) FROM issues WHERE status='pending' GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    def queue(self, now: datetime) -> dict[str, Any]:
        """The delivery queue at `now`: pending issues, how many are due for an attempt, how many
        are claimed (and whose lease ran out), and the oldest pending slot."""
        row = self._q(
            "SELECT count(*), "
            "coalesce(sum(CASE WHEN next_attempt IS NULL OR next_attempt <= ? THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN claimed_by IS NOT NULL THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN claimed_by IS NOT NULL AND claim_until < ? THEN 1 ELSE 0 END), 0), "
            "min(slot) FROM issues WHERE status='pending'", (R.ts(now), R.ts(now))).fetchone()
        return {"pending": int(row[0]), "due": int(row[1]), "claimed": int(row[2]), "lease_expired": int(row[3]),
                "oldest_slot_utc": row[4]}
