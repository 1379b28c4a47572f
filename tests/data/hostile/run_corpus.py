"""Runs files through every source format, storing what parses, under an address-space cap.

    python run_corpus.py CAP_MIB FILE...

Prints one JSON line per (file, format) and per ingest_paths call, then {"maxrss_kib": N}. Only
SourceError is caught: any other exception ends the run with its traceback (the test fails on it).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import unicodedata
from datetime import date, datetime, timezone
from pathlib import Path

NOW = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


def _check(entry: object) -> None:
    from newsletter.models import Entry

    assert isinstance(entry, Entry)
    shown = [entry.title, entry.abstract, *entry.authors, entry.organization or ""]
    for text in shown:
        bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n"
               or c in "\u00ad\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"]
        assert not bad, (entry.id, text[:80], bad[:5])
    for n in (entry.upvotes, entry.comments, entry.author_count):
        assert n is None or 0 <= n < 2**63, (entry.id, n)


def main(argv: list[str]) -> int:
    cap = int(argv[0]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from newsletter import sources
    from newsletter.errors import SourceError
    from newsletter.ingest import ingest_paths
    from newsletter.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        for n, name in enumerate(argv[1:]):
            path = Path(name)
            data = path.read_bytes()
            for kind in sources.FORMATS:
                print(json.dumps({"file": path.name, "format": kind}), end=" ", flush=True)
                try:
                    parsed = sources.parse_all(kind, data, source=path.name, today=date(2026, 11, 27))
                except SourceError as exc:
                    print(json.dumps({"error": str(exc)[:300]}), flush=True)
                    continue
                for entry in parsed.entries:
                    _check(entry)
                with Store(Path(tmp) / f"{n}-{kind}.sqlite3") as store:
                    counts = store.upsert_entries(parsed.entries, NOW)
                print(json.dumps({"entries": len(parsed.entries), "skipped": list(parsed.skipped)[:10],
                                  "new": counts["new"]}, ensure_ascii=False), flush=True)
            with Store(Path(tmp) / f"{n}-paths.sqlite3") as store:
                (report,) = ingest_paths(store, [str(path)], None, NOW)
            print(json.dumps({"file": path.name, "format": "ingest_paths"}), json.dumps(
                {"error": report.error, "new": report.new, "skipped": len(report.skipped)}), flush=True)
    print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
