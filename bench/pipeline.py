"""Benchmark: build and render the issues of N subscribers due at the same slot (no delivery).

    python bench/pipeline.py [--subscribers 2000]

Uses the bundled sample data (79 papers) and profiles drawn from a few dozen realistic queries.
Prints seconds for ingest, matching + rendering + message building, and issues per second.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import ingest, pipeline  # noqa: E402
from newsletter.config import load  # noqa: E402
from newsletter.store import Store  # noqa: E402

QUERIES = ['"language model"', "causal*", "title:diffusion", "model AND NOT survey", "LLM OR agent*",
           '"machine learning" AND (treatment OR confounding)', "data", "interpretab*", "quantization",
           "distillation", "RL", '"pre-training"', "benchmark*", "title:(alignment OR reasoning)", "token*"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp())
    subs = "".join(
        f"  - email: u{i}@example.org\n    keywords: {rng.sample(QUERIES, rng.randint(2, 5))!r}\n"
        f"    max_entries: {rng.randint(3, 10)}\n" for i in range(args.subscribers))
    (folder / "subscribers.yaml").write_text(
        'newsletter:\n  sender: "Digest <digest@example.org>"\n  sources:\n'
        f"    - {{name: listing, type: hf-listing, path: {ROOT / 'data' / 'daily_papers_listing.txt'}}}\n"
        f"    - {{name: hf, type: hf-daily, path: {ROOT / 'data' / 'hf_daily_papers_sample.json'}}}\n"
        "subscribers:\n" + subs)
    now = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
    t = time.perf_counter()
    config = load(folder / "subscribers.yaml")
    load_s = time.perf_counter() - t
    store = Store.snapshot(folder / "state.sqlite3")
    t = time.perf_counter()
    ingest.ingest_sources(store, config, now)
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    planned, _ = pipeline.plan(config, store, now, secret="bench")
    plan_s = time.perf_counter() - t
    built = sum(1 for p in planned if p.message)
    size = sum(len(p.message or b"") for p in planned)
    print(f"subscribers              {args.subscribers:,}")
    print(f"load + validate yaml     {load_s:.2f} s")
    print(f"ingest (79 papers)       {ingest_s:.2f} s")
    print(f"match + render + message {plan_s:.2f} s for {built:,} issues -> {built / plan_s:,.0f} issues/s, "
          f"{size / max(built, 1) / 1024:.1f} KB per message")


if __name__ == "__main__":
    main()
