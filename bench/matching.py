"""Benchmark: match 100,000 profiles (3-10 keyword queries each, phrases, prefixes, scopes, excludes)
against 500 entries, and compare with a naive per-subscriber regular-expression baseline measured in
the same run on a sample of the profiles.

    python bench/matching.py [--profiles 100000] [--entries 500] [--sample 300] [--seed 7]

Entries are built from the real abstracts in data/ and tests/data/ (sentences reshuffled so there are
500 distinct papers). Queries are drawn with a Zipf-like popularity from a pool of distinct queries,
as real profiles share keywords ("diffusion", "language model"), but the pool is large (20,000) and
every query in it is different. Prints seconds, pairs per second, peak RSS and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.batch import BatchMatcher  # noqa: E402
from newsletter.matching import EntryIndex, Profile  # noqa: E402
from newsletter.models import Entry  # noqa: E402
from newsletter.query import And, Not, Or, Query, Term, parse  # noqa: E402
from newsletter.sources import hf_daily, listing  # noqa: E402
from newsletter.text import STOP_WORDS, words  # noqa: E402


def real_entries() -> list[Entry]:
    from datetime import date

    out = listing.parse((ROOT / "data" / "daily_papers_listing.txt").read_bytes(), source="l", today=date(2026, 11, 27))
    for path in sorted((ROOT / "tests" / "data").glob("hf_daily_papers_*.json")):
        out += hf_daily.parse(path.read_bytes(), source="h")
    return out


def make_entries(n: int, rng: random.Random) -> list[Entry]:
    base = real_entries()
    sentences = [s for e in base for s in re.split(r"(?<=[.!?])\s+", e.abstract) if len(s) > 20]
    out = []
    for i in range(n):
        src = base[i % len(base)]
        abstract = " ".join(rng.sample(sentences, 8))
        title = src.title if i < len(base) else " ".join(rng.sample(words(src.title + " " + abstract), 9))
        out.append(Entry(id=f"e{i}", title=title, abstract=abstract, upvotes=rng.randint(0, 50),
                         authors=(f"Author {rng.randint(1, 400)}", f"Author {rng.randint(1, 400)}")))
    return out


def make_query_pool(entries: list[Entry], size: int, rng: random.Random) -> list[str]:
    vocab: dict[str, int] = {}
    bigrams: dict[str, int] = {}
    for e in entries:
        ws = [w for w in words(e.title + " " + e.abstract) if w.isalpha() and len(w) > 2]
        for w in ws:
            vocab[w] = vocab.get(w, 0) + 1
        for a, b in zip(ws, ws[1:]):
            if a not in STOP_WORDS and b not in STOP_WORDS:
                bigrams[f"{a} {b}"] = bigrams.get(f"{a} {b}", 0) + 1
    terms = [w for w in sorted(vocab) if w not in STOP_WORDS]
    phrases = [p for p in sorted(bigrams) if bigrams[p] > 1]
    pool: set[str] = set()
    while len(pool) < size:
        kind = rng.random()
        if kind < 0.40:
            q = rng.choice(terms)
        elif kind < 0.60:
            q = f'"{rng.choice(phrases)}"'
        elif kind < 0.70:
            q = rng.choice(terms)[:5] + "*"
        elif kind < 0.80:
            q = f"title:{rng.choice(terms)}"
        elif kind < 0.95:
            q = f'"{rng.choice(phrases)}" AND ({rng.choice(terms)} OR {rng.choice(terms)})'
        else:
            q = f"author:\"Author {rng.randint(1, 400)}\""
        pool.add(q)
    return sorted(pool)


def zipf_pick(pool: list[str], rng: random.Random) -> str:
    # popularity ~ 1/rank: a few queries are common, most are rare
    return pool[min(len(pool) - 1, int(len(pool) ** rng.random()) - 1)]


def make_profiles(pool: list[str], n: int, rng: random.Random) -> list[tuple[list[str], list[str]]]:
    excludes = ["survey", "review", "benchmark", "title:position", "medical", "quantum"]
    out = []
    for _ in range(n):
        keywords = sorted({zipf_pick(pool, rng) for _ in range(rng.randint(3, 10))})
        exclude = rng.sample(excludes, rng.randint(0, 2))
        out.append((keywords, exclude))
    return out


# --- the naive baseline: per-subscriber regular expressions ------------------------------------

def _regex_eval(node: object, e: Entry) -> bool:
    if isinstance(node, Term):
        fields = {"title": e.title, "abstract": e.abstract, "author": " ; ".join(e.authors)}
        texts = [fields[node.field]] if node.field else [e.title, e.abstract]
        body = r"\W+".join(re.escape(w) for w in node.words)
        pattern = re.compile(r"\b" + body + (r"\w*" if node.prefix else r"\w{0,3}") + r"\b", re.I)
        return any(pattern.search(t) for t in texts)
    if isinstance(node, Not):
        return not _regex_eval(node.child, e)
    if isinstance(node, And):
        return all(_regex_eval(c, e) for c in node.children)
    assert isinstance(node, Or)
    return any(_regex_eval(c, e) for c in node.children)


def naive(profiles: list[Profile], entries: list[Entry]) -> int:
    hits = 0
    for p in profiles:
        for e in entries:
            if any(_regex_eval(q.root, e) for q in p.keywords) and not any(_regex_eval(q.root, e) for q in p.exclude):
                hits += 1
    return hits


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=100_000)
    ap.add_argument("--entries", type=int, default=500)
    ap.add_argument("--pool", type=int, default=20_000, help="distinct queries to draw from")
    ap.add_argument("--sample", type=int, default=300, help="profiles for the regex baseline")
    ap.add_argument("--limit", type=int, default=10, help="max_entries per profile")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5, help="engine runs; the median is reported")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    entries = make_entries(args.entries, rng)
    pool = make_query_pool(entries, args.pool, rng)
    raw = make_profiles(pool, args.profiles, rng)
    t = time.perf_counter()
    cache: dict[str, Query] = {}

    def q(text: str) -> Query:
        if text not in cache:
            cache[text] = parse(text)
        return cache[text]

    profiles = [Profile(tuple(map(q, kw)), tuple(map(q, ex))) for kw, ex in raw]
    parse_s = time.perf_counter() - t

    runs = []
    for _ in range(args.repeat):  # a fresh index and matcher each time: nothing is cached between runs
        t = time.perf_counter()
        index = EntryIndex(entries)
        index.field("title"), index.field("abstract")  # the author field is built on first use, in match
        index_s = time.perf_counter() - t
        t = time.perf_counter()
        result = BatchMatcher(index).select_many(profiles, args.limit)
        match_s = time.perf_counter() - t
        runs.append((index_s + match_s, index_s, match_s))
    runs.sort()
    total_s, index_s, match_s = runs[len(runs) // 2]  # the median run
    selected = result.selections
    pairs = args.profiles * args.entries
    rss = peak_rss_mb()

    sample = profiles[: args.sample]
    t = time.perf_counter()
    naive(sample, entries)
    naive_s = time.perf_counter() - t
    naive_rate = args.sample * args.entries / naive_s
    engine_rate = pairs / (index_s + match_s)
    result = {
        "profiles": args.profiles, "entries": args.entries, "distinct_queries": len(cache),
        "parse_s": round(parse_s, 3), "index_s": round(index_s, 3), "match_s": round(match_s, 3),
        "pairs_per_s": round(engine_rate), "selected": selected,
        "total_min_s": round(runs[0][0], 3), "total_max_s": round(runs[-1][0], 3), "peak_rss_mb": round(rss, 1),
        "naive_sample_profiles": args.sample, "naive_s": round(naive_s, 3),
        "naive_pairs_per_s": round(naive_rate), "speedup": round(engine_rate / naive_rate, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"profiles x entries       {args.profiles:,} x {args.entries} ({len(cache):,} distinct queries)")
    print(f"parse (not timed below)  {parse_s:.2f} s")
    print(f"index entries            {index_s:.3f} s")
    print(f"match + rank (top {args.limit})    {match_s:.3f} s   -> {index_s + match_s:.3f} s total, "
          f"{engine_rate:,.0f} pairs/s, {selected:,} selections")
    print(f"total over {args.repeat} runs     min {runs[0][0]:.3f} s, median {total_s:.3f} s, max {runs[-1][0]:.3f} s")
    print(f"peak RSS                 {rss:.0f} MB")
    print(f"naive regex baseline     {naive_s:.2f} s for {args.sample} profiles -> {naive_rate:,.0f} pairs/s")
    print(f"speed-up                 {engine_rate / naive_rate:,.0f}x")


if __name__ == "__main__":
    main()
