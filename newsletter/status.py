"""`newsletter status`: per subscriber the next slot, last issue and why nothing was sent; per source
the last fetch and its error."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from newsletter import issues as issuelib
from newsletter.models import Config
from newsletter.roster import Roster
from newsletter.store import Store


def collect(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    failing = [f"source '{s.name}' failed at its last fetch: {s.last_error}" for s in store.sources() if s.last_error]
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
            row["why"] = st.reason if not st.active else _explain(row["last_issue"], failing, row["next_slot_utc"])
            subscribers.append(row)
    srcs = [{"name": s.name, "last_fetch": s.last_fetch.isoformat() if s.last_fetch else None,
             "last_ok": s.last_ok.isoformat() if s.last_ok else None,
             "entries": s.entries, "error": s.last_error} for s in store.sources()]
    pending = [{"email": r.subscriber, "slot_utc": r.slot.isoformat(), "attempts": r.attempts,
                "error": r.last_error, "claimed_by": r.claimed_by} for r in store.issues("pending")]
    failed = [{"email": r.subscriber, "slot_utc": r.slot.isoformat(), "code": r.last_code,
               "error": r.last_error} for r in store.issues("failed")]
    return {"subscribers": subscribers, "sources": srcs, "pending": pending, "failed": failed,
            "claims": store.claims(), "queue": store.queue(now),
            "workers": {owner: n for owner, n in store.claims().items() if owner},
            "entries": store.entry_count()}


def _explain(last: dict[str, Any] | None, failing: list[str], nxt: str | None) -> str:
    """One line answering "why didn't I get an email?" for an active subscriber."""
    if last is None:
        return f"no issue yet; the first is due at {nxt} UTC"
    if last["status"] == "sent":
        cut = (f" ({last['left_out_for_size']} more matching papers left out to stay under Gmail's clipping size)"
               if last["left_out_for_size"] else "")
        return f"last issue delivered at {last['sent_at']}{cut}"
    why = last["why_nothing_sent"] or last["status"]
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
        result = f"error: {s['error']}" if s["error"] else f"ok, {s['entries']} entries"
        lines.append(f"  {s['name']}: last fetch {s['last_fetch']} — {result}")
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
