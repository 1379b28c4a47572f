"""`newsletter status`: per subscriber the next slot, last issue and why nothing was sent; per source
the last fetch and its error."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from newsletter import issues as issuelib
from newsletter import records
from newsletter.models import Config, SourceConfig
from newsletter.roster import Roster
from newsletter.schedule import Schedule
from newsletter.store import SourceRow, Store

DAYS_SHOWN = 7


def _retry_at(row: SourceRow, src: SourceConfig | None, days: records.SourceDays) -> str | None:
    """When the source is asked again: after a rate limit's wait, else at its next scheduled fetch."""
    if days.retry_at:
        return datetime.fromisoformat(days.retry_at).strftime("%Y-%m-%d %H:%M UTC")
    if src is None or row.last_fetch is None:
        return None
    nxt = Schedule(src.schedule, "UTC").next_after(row.last_fetch)
    return f"{nxt:%Y-%m-%d %H:%M} UTC" if nxt else None


def _quiet_day(src: SourceConfig | None, name: str, day: str) -> str:
    """How a day without a list reads: arXiv announces on weekdays only."""
    when = date.fromisoformat(day)
    if src is not None and src.type == "arxiv":
        return f"{name}: arXiv made no announcement on {when:%A} ({day})"
    return f"{name}: no list for {day}"


def source_rows(config: Config, store: Store) -> list[dict[str, Any]]:
    """Each fetched source: its last fetch, its error and when it is retried, its recent days."""
    configured = {s.name: s for s in config.settings.sources}
    out = []
    for row in store.sources():
        if records.is_record(row.name):
            continue
        src = configured.get(row.name)
        days = records.load_days(store, row.name)
        recent = sorted(days.days.items())[-DAYS_SHOWN:]
        quiet = [_quiet_day(src, row.name, d) for d, rec in recent if rec.state == "empty"]
        retry = _retry_at(row, src, days) if row.last_error or days.note else None
        out.append({
            "name": row.name, "last_fetch": row.last_fetch.isoformat() if row.last_fetch else None,
            "last_ok": row.last_ok.isoformat() if row.last_ok else None, "entries": row.entries,
            "error": row.last_error, "retry_at": retry, "note": days.note, "no_list": quiet,
            "days": [{"day": d, "state": rec.state, "papers": rec.papers, "error": rec.error} for d, rec in recent],
        })
    return out


def collect(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    srcs = source_rows(config, store)
    failing = [f"source '{s['name']}' failed at its last fetch: {s['error']}"
               + (f"; will retry at {s['retry_at']}" if s["retry_at"] else "") for s in srcs if s["error"]]
    quiet = [q for s in srcs for q in s["no_list"][-2:]]  # the last two quiet days of each source
    subscribers = []
    nexts: dict[tuple[str, str], datetime | None] = {}
    for batch in Roster(config, store).batches():
        last_issues = store.last_issues([m.subscriber.email for m in batch])
        for member in batch:
            sub, st = member.subscriber, member.standing
            key = (sub.schedule, sub.timezone)
            if key not in nexts:
                nexts[key] = issuelib.schedule_of(sub).next_after(now)
            nxt = nexts[key]
            last = last_issues.get(sub.email)
            row: dict[str, Any] = {
                "email": sub.email,
                "home": sub.home,
                "state": st.state,
                "next_slot_utc": nxt.isoformat() if nxt else None,
                "next_slot_local": nxt.astimezone(ZoneInfo(sub.timezone)).isoformat() if nxt else None,
                "last_issue": None,
            }
            if last is not None:
                row["last_issue"] = {
                    "slot_utc": last.slot.isoformat(), "status": last.status, "entries": last.entry_count,
                    "attempts": last.attempts, "error": last.last_error, "sent_at":
                    last.sent_at.isoformat() if last.sent_at else None,
                    "why_nothing_sent": _why(last.status, last.last_error),
                    "left_out_for_size": last.dropped,
                }
            row["why"] = (st.reason if not st.active
                          else _explain(row["last_issue"], failing, quiet, row["next_slot_utc"]))
            subscribers.append(row)
    pending = [{"email": r.subscriber, "slot_utc": r.slot.isoformat(), "attempts": r.attempts,
                "error": r.last_error, "claimed_by": r.claimed_by} for r in store.issues("pending")]
    failed = [{"email": r.subscriber, "slot_utc": r.slot.isoformat(), "code": r.last_code,
               "error": r.last_error} for r in store.issues("failed")]
    return {"subscribers": subscribers, "sources": srcs, "pending": pending, "failed": failed,
            "claims": store.claims(), "queue": store.queue(now),
            "workers": {owner: n for owner, n in store.claims().items() if owner},
            # per worker: its claims and latest lease; one whose lease ran out is gone or stalled (another
            # worker takes its claims: ledger.stealable)
            "worker_leases": {owner: {"claims": n, "lease_until": until.isoformat() if until else None,
                                      "lease_expired": until is None or until < now}
                              for owner, (n, until) in store.worker_leases().items()},
            "entries": store.entry_count()}


def _explain(last: dict[str, Any] | None, failing: list[str], quiet: list[str], nxt: str | None) -> str:
    """One line answering "why didn't I get an email?" for an active subscriber."""
    if last is None:
        return f"no issue yet; the first is due at {nxt} UTC"
    if last["status"] == "sent":
        cut = (f" ({last['left_out_for_size']} more matching papers left out to stay under Gmail's clipping size)"
               if last["left_out_for_size"] else "")
        return f"last issue delivered at {last['sent_at']}{cut}"
    why = last["why_nothing_sent"] or last["status"]
    if last["status"] == "empty" and quiet and why.startswith("no new entries"):
        why += " (" + "; ".join(quiet) + ")"
    if last["status"] == "empty" and failing:
        why += "; " + "; ".join(failing)
    return why


def _why(status: str, error: str | None) -> str | None:
    return {
        "empty": error or "nothing new matched the profile",
        "failed": f"bounced: the server refused it permanently: {error}",
        "expired": f"expired before it could be delivered: {error}",
        "pending": f"waiting to be delivered{': ' + error if error else ''}",
    }.get(status)


def as_text(info: dict[str, Any]) -> str:
    lines = [f"{info['entries']} entries stored", "", "Subscribers:"]
    for s in info["subscribers"]:
        lines.append(f"  {s['email']} [{s['state']}] next: {s['next_slot_local']} ({s['next_slot_utc']} UTC)")
        lines.append(f"    {s['why']}")
        last = s["last_issue"]
        if last is None:
            lines.append("    no issue yet")
        else:
            why = f" — {last['why_nothing_sent']}" if last["why_nothing_sent"] else ""
            lines.append(f"    last issue {last['slot_utc']}: {last['status']}, {last['entries']} entries{why}")
    lines.append("")
    lines.append("Sources:")
    if not info["sources"]:
        lines.append("  none fetched yet")
    for s in info["sources"]:
        if s["error"]:
            result = f"error: {s['error']}" + (f"; will retry at {s['retry_at']}" if s["retry_at"] else "")
        else:
            result = f"ok, {s['entries']} entries"
        lines.append(f"  {s['name']}: last fetch {s['last_fetch']} — {result}")
        lines.extend(f"    {q}" for q in s["no_list"][-3:])
        if s["note"]:
            lines.append(f"    {s['note']}" + (f"; will retry at {s['retry_at']}" if s["retry_at"] else ""))
    if info["pending"]:
        lines.append("")
        lines.append(f"Pending deliveries: {len(info['pending'])}")
        lines.extend(f"  {p['email']} ({p['slot_utc']}): {p['attempts']} attempts, {p['error'] or '-'}"
                     for p in info["pending"])
    if info["failed"]:
        lines.append("")
        lines.append(f"Failed deliveries: {len(info['failed'])}")
        lines.extend(f"  {f['email']} ({f['slot_utc']}): {f['error']}" for f in info["failed"])
    return "\n".join(lines)
