"""Benchmark: `newsletter validate` on a generated N-subscriber file (default 100,000), timed as a user
runs it (a fresh `python -m newsletter` process), with its peak RSS.

    python bench/config.py [--subscribers 100000] [--seed 7] [--runs 1] [--baseline REV] [--keep PATH]

The file is deterministic for a seed: 3-10 queries per subscriber drawn with a Zipf-like popularity
from a pool of 20,000 distinct queries (words, phrases, prefixes, field scopes, AND/OR groups; the
pool of bench/matching.py), some excludes, names, a dozen time zones and several schedules, a few
paused or unsubscribed (as files of the old release have). In the same run it times:

  * `validate` as it is (libyaml's CSafeLoader when PyYAML has it),
  * `validate` with libyaml hidden (pure-Python SafeLoader: the figure without libyaml),
  * with --baseline REV, `validate` from that git revision (e.g. the commit before the speed-up).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from matching import make_entries, make_query_pool, zipf_pick  # noqa: E402

ZONES = ("UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York", "America/Chicago",
         "America/Los_Angeles", "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Asia/Shanghai",
         "Australia/Sydney")
SCHEDULES = ("0 7 * * *", "30 8 * * mon-fri", "0 6 * * 1-5", "0 9 * * mon", "0 18 * * *", "15 7 * * 1,3,5",
             "0 8 1 * *", "0 */12 * * *")
EXCLUDES = ("survey", "review", "benchmark", "title:position", "medical", "quantum", 'author:"Anonymous"',
            '"position paper"')
FIRST = ("ada", "grace", "alan", "barbara", "edsger", "donald", "margaret", "john", "frances", "tony",
         "radia", "ken", "shafi", "leslie", "joerg", "zoe", "li", "maria")
FIRST_INTL = ("jörg", "zoë", "李", "maría", "søren", "đorđe")  # 2 % of addresses: a UTF-8 local part
DOMAINS = ("example.org", "lab.example.net", "uni.example.edu", "mail.example.com", "münchen.example")
HIDE_LIBYAML = "import yaml; yaml.CSafeLoader = yaml.SafeLoader; "  # the pure-Python composer, same marks


def make_document(n: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    pool = make_query_pool(make_entries(500, rng), 20_000, rng)
    subscribers = []
    for i in range(n):
        first = rng.choice(FIRST_INTL if rng.random() < 0.02 else FIRST)
        sub: dict[str, object] = {"email": f"{first}.{i}@{rng.choice(DOMAINS)}"}
        if rng.random() < 0.6:
            sub["name"] = f"{first.title()} {i}"
        sub["keywords"] = sorted({zipf_pick(pool, rng) for _ in range(rng.randint(3, 10))})
        if rng.random() < 0.3:
            sub["exclude"] = rng.sample(EXCLUDES, rng.randint(1, 2))
        if rng.random() < 0.7:
            sub["timezone"] = rng.choice(ZONES)
        if rng.random() < 0.4:
            sub["schedule"] = rng.choice(SCHEDULES)
        if rng.random() < 0.2:
            sub["max_entries"] = rng.randint(3, 20)
        if rng.random() < 0.1:
            sub["min_upvotes"] = rng.randint(1, 10)
        if rng.random() < 0.01:
            sub["paused"] = True
        elif rng.random() < 0.005:
            sub["unsubscribed"] = True  # a warning each: that state now lives in the store
        subscribers.append(sub)
    return {
        "newsletter": {
            "title": "Daily Papers Digest", "sender": "Daily Papers <digest@example.org>",
            "base_url": "https://digest.example.org",
            "sources": [
                {"name": "hf-daily", "type": "hf-daily", "url": "https://huggingface.co/api/daily_papers",
                 "timeout": 20},
                {"name": "arxiv-cl", "type": "arxiv", "url": "https://rss.arxiv.org/atom/cs.CL",
                 "schedule": "0 */6 * * *"},
                {"name": "saved", "type": "hf-listing", "path": "listing.txt"},
            ],
            "schedule": "0 7 * * *", "timezone": "UTC", "max_entries": 10,
            "smtp": {"host": "localhost", "port": 587, "tls": "starttls", "concurrency": 4},
        },
        "subscribers": subscribers,
    }


def timed(argv: list[str], cwd: Path | None = None,
          env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MB) and exit code of one child process.
    The machine is shared: CPU time says what the code costs when wall time is stretched by others."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def validate_argv(path: Path, hide_libyaml: bool) -> list[str]:
    prelude = HIDE_LIBYAML if hide_libyaml else ""
    code = f"{prelude}import sys; from newsletter.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "--file", str(path), "validate"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=1, help="runs of each variant; the fastest is shown")
    ap.add_argument("--baseline", metavar="REV", help="also time `validate` from this git revision")
    ap.add_argument("--no-pure", action="store_true", help="skip the run with libyaml hidden")
    ap.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        doc = make_document(args.subscribers, args.seed)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=True, width=200)
        path = args.keep or folder / "subscribers.yaml"
        path.write_text(text, encoding="utf-8")
        (path.parent / "listing.txt").write_text("")
        print(f"generated {args.subscribers:,} subscribers, {len(text) / 1e6:.1f} MB of YAML "
              f"in {time.perf_counter() - t:.1f} s: {path}")
        print(f"PyYAML {yaml.__version__}, libyaml {'available' if yaml.__with_libyaml__ else 'absent'}")

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        variants: list[tuple[str, list[str], Path | None, dict[str, str]]] = [
            ("validate (this tree)", validate_argv(path, False), None, env)]
        if not args.no_pure:
            variants.append(("validate, libyaml hidden", validate_argv(path, True), None, env))
        if args.baseline:
            base = folder / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "newsletter"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            variants.append((f"validate at {args.baseline}", validate_argv(path, False), base,
                             dict(os.environ, PYTHONPATH=str(base))))
        print(f"{'':28} {'wall':>9} {'CPU':>9} {'peak RSS':>10}")
        for label, argv, cwd, variant_env in variants:
            runs = [timed(argv, cwd, variant_env) for _ in range(args.runs)]
            wall, cpu, rss, code = min(runs)
            status = "" if code == 0 else f"   (exit {code})"
            print(f"{label:28} {wall:7.2f} s {cpu:7.2f} s {rss:7.0f} MB{status}")


if __name__ == "__main__":
    main()
