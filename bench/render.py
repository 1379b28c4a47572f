"""Benchmark: complete personalised messages per second (rendered HTML + text and the final message
bytes, DKIM off) for N subscribers of one slot, with a shared SlotRenderer, and in the same run the
same issues rendered each alone (`rendering.render` without a cache) on a sample, for the speed-up.

    python bench/render.py [--subscribers 5000] [--sample 200] [--seed 7]

Entries: the real papers in tests/data (Hugging Face daily JSON and the saved listing). Profiles:
1-5 queries drawn from a pool (phrases, prefixes, field scopes), some excludes, several time zones,
max_entries 3-20. Matching and issue building are outside the timed part: what is timed is
`newsletter.composer.Composer` as newsletter/builder.py calls it (the links, the renderer, the message). One
process, one core; the rates are per second of this process's CPU time (the machine is shared, so
wall time is printed beside it).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.composer import Composer  # noqa: E402
from newsletter.matching import EntryIndex, Profile, gc_paused  # noqa: E402
from newsletter.models import Issue, Settings, SmtpConfig, Subscriber  # noqa: E402
from newsletter.rendering import SlotRenderer  # noqa: E402
from newsletter.sources import hf_daily, listing  # noqa: E402

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=timezone.utc)
QUERIES = ['"language model"', "reasoning", "agent*", "title:video", "abstract:benchmark", "author:wang",
           '"reinforcement learning"', "diffusion OR image", "LLM AND NOT survey", "robot*", "title:model",
           '"large language"', "multimodal", "code", "speech OR audio", "3D", "attention", "data",
           "quantization", "distill*", "title:agent", '"vision language"', "safety OR alignment", "math*"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--sample", type=int, default=200, help="issues rendered each alone, for the speed-up")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = ROOT / "tests" / "data"
    entries = (hf_daily.parse((data / "hf_daily_papers_2026-06-12_30items.json").read_bytes(), source="hf")
               + listing.parse((data / "daily_papers_listing.txt").read_bytes(), source="l", today=date(2026, 11, 27)))
    settings = Settings(title="Daily Papers Digest", sender="Daily Papers <digest@example.org>",
                        base_url="https://digest.example.org", sources=(), schedule="0 7 * * *", timezone="UTC",
                        max_entries=10, send_empty=False, min_upvotes=0, smtp=SmtpConfig(), templates=None,
                        unsubscribe_mailto=None)
    rng = random.Random(args.seed)
    index = EntryIndex(entries)
    work = []
    for i in range(args.subscribers):
        sub = Subscriber(email=f"user{i}@example.org", name=rng.choice([None, f"Reader {i}"]),
                         keywords=tuple(rng.sample(QUERIES, rng.randint(1, 5))),
                         exclude=tuple(rng.sample(["survey", "title:benchmark", "medical"], rng.randint(0, 1))),
                         schedule="0 7 * * *", timezone=rng.choice(["UTC", "Europe/Paris", "America/New_York"]),
                         max_entries=rng.choice([3, 5, 10, 20]), min_upvotes=0, send_empty=True)
        matches = index.select(Profile.from_strings(sub.keywords, sub.exclude), limit=sub.max_entries)
        work.append(Issue(id=f"{i:032x}", subscriber=sub, slot=NOW, built_at=NOW, matches=tuple(matches)))
    papers = sum(len(w.matches) for w in work)
    # what the builder calls per subscriber: links (unsubscribe, manage, view, rating), render, message
    compose = Composer(settings, link_secret="bench-secret-0123456789")
    start, cpu = time.perf_counter(), time.process_time()
    with gc_paused():  # as the builder runs it (Builder.build pauses the collector per batch)
        size = sum(len(compose(issue)[1]) for issue in work)
    shared_s, shared_cpu = time.perf_counter() - start, time.process_time() - cpu
    renderer = next(r for r in compose._cache.values() if isinstance(r, SlotRenderer))
    sample = work[: args.sample]
    alone = Composer(settings, link_secret="bench-secret-0123456789")
    start, cpu = time.perf_counter(), time.process_time()
    with gc_paused():
        for issue in sample:
            alone.forget()  # nothing shared between issues but the parsed templates
            alone(issue)
    alone_s, alone_cpu = time.perf_counter() - start, time.process_time() - cpu
    shared_rate = len(work) / shared_cpu
    plans = sum(1 for p in renderer._plans.values() if not isinstance(p, int))
    print(f"subscribers: {len(work):,}  papers in issues: {papers:,} (avg {papers / len(work):.1f})  "
          f"avg message: {size / len(work) / 1024:.1f} KB")
    print(f"shared SlotRenderer: {shared_cpu:.2f} s CPU ({shared_s:.2f} s wall), {shared_rate:,.0f} messages/s "
          f"(incl. first-time cards, frames and plans: {len(renderer._cards)} cards, {len(renderer._frames)} frames, "
          f"{plans} plans of {len(renderer._plans)} shapes)")
    if sample:
        alone_rate = len(sample) / alone_cpu
        print(f"each issue alone ({len(sample)} sampled): {alone_cpu:.2f} s CPU ({alone_s:.2f} s wall), "
              f"{alone_rate:,.0f} messages/s")
        print(f"speed-up: {shared_rate / alone_rate:.1f}x")


if __name__ == "__main__":
    main()
