"""`newsletter explain`: one paper across N store-held subscribers (issue 16's goal: <= 0.5 s at 10,000).

Generates, deterministically, a state with N subscribers (2 keyword queries each, one daily slot),
`--days` days of `--per-day` papers and one sent issue per subscriber per day carrying 5 papers;
then times, in one process, `Deployment.explain` of one paper for every subscriber (twice: cold and
warm caches) and for one subscriber, and the whole `newsletter explain` command.

    python bench/explain.py [-n 10000] [--days 10] [--per-day 300] [--vocabulary 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.deployment import Deployment  # noqa: E402
from newsletter.explain import Reason  # noqa: E402
from newsletter.issues import issue_id  # noqa: E402
from newsletter.models import Entry, Subscriber  # noqa: E402
from newsletter.store import NewIssue, open_store  # noqa: E402

BASE = ("language model quantization distillation diffusion agent causal inference graph neural protein "
        "retrieval speech vision robot planning reasoning alignment sparse attention").split()
SUFFIXES = ("", "s", "ing", "al", "ist", "ism", "ity", "ive", "ed", "er")


def vocabulary(size: int) -> list[str]:
    """`size` distinct words (200 by default: a paper's 60-word abstract then holds a given word a
    quarter of the time, and two thirds of the profiles match any paper; real lists match far fewer)."""
    return [f"{a}{b}{n or ''}" for n in range(size // 200 + 1) for a in BASE for b in SUFFIXES][:size]
START = datetime(2026, 11, 1, 7, 0, tzinfo=timezone.utc)


def paper_id(day: int, i: int) -> str:
    return f"2611.{day:02d}{i:03d}"


def generate(folder: Path, n: int, days: int, per_day: int, words: list[str]) -> tuple[Path, Path]:
    project = folder / "subscribers.yaml"
    state = folder / "state.sqlite3"
    project.write_text(yaml.safe_dump({"newsletter": {"title": "Bench", "sender": "Bench <b@example.org>",
                                                      "state": str(state)}, "subscribers": []}))
    if state.exists():
        return project, state
    rng = random.Random(16)
    with open_store(state) as store:
        for day in range(days):
            seen = START + timedelta(days=day, minutes=-60)
            store.upsert_entries([Entry(id=paper_id(day, i), title=" ".join(rng.sample(words, 5)),
                                        abstract=" ".join(rng.choices(words, k=60)), upvotes=rng.randint(0, 100))
                                  for i in range(per_day)], seen)
        subs = [Subscriber(email=f"r{i:06d}@example.org", name=None, keywords=tuple(rng.sample(words, 2)),
                           exclude=(), schedule="0 7 * * *", timezone="UTC", max_entries=5, min_upvotes=0,
                           send_empty=False, home="store") for i in range(n)]
        store.add_subscribers(subs, START - timedelta(days=1))
        for day in range(days):
            slot = START + timedelta(days=day)
            built = slot + timedelta(minutes=1)
            ids = [paper_id(day, i) for i in range(per_day)]
            store.record_issues([NewIssue(issue_id(s.email, slot), s.email, slot, built, "pending",
                                          tuple(rng.sample(ids, 5)), "subject", f"<{day}.{s.email}>", b"x")
                                 for s in subs], None, None)
            store._many("UPDATE issues SET status = 'sent', sent_at = built_at WHERE slot = ?",
                        [(slot.isoformat(),)])
            store._many("DELETE FROM issue_messages WHERE issue_id IN (SELECT id FROM issues WHERE slot = ?)",
                        [(slot.isoformat(),)])  # a sent issue keeps no message bytes
    return project, state


def timed(dep: Deployment, paper: str, subscriber: str | None = None) -> tuple[float, Counter[str]]:
    kinds: Counter[str] = Counter()

    def each(reason: Reason) -> None:
        kinds[reason.code] += 1

    t = time.perf_counter()
    dep.explain(paper, each, subscriber=subscriber)
    return time.perf_counter() - t, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--subscribers", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--per-day", type=int, default=300)
    ap.add_argument("--vocabulary", type=int, default=200, help="distinct words of titles, abstracts and queries")
    ap.add_argument("--keep", type=Path, help="generate into (and reuse) this folder")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-explain-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    project, state = generate(folder, args.subscribers, args.days, args.per_day, vocabulary(args.vocabulary))
    print(f"state: {state} ({state.stat().st_size / 1e6:.0f} MB, ready in {time.perf_counter() - t:.1f} s)")
    dep = Deployment.open(project, None, {})
    paper = paper_id(args.days // 2, 7)
    for label in ("every subscriber (cold)", "every subscriber (warm)"):
        seconds, kinds = timed(dep, paper)
        print(f"{label}: {seconds:.3f} s  {dict(sorted(kinds.items()))}")
    seconds, kinds = timed(dep, paper, "r000042@example.org")
    print(f"one subscriber: {seconds:.3f} s  {dict(kinds)}")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "newsletter", "--file", str(project), "explain", paper], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"newsletter explain {paper} (whole command): {time.perf_counter() - t:.3f} s")


if __name__ == "__main__":
    main()
