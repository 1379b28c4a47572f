"""Benchmark: the SMTP sender against Postfix's smtp-source, into the same smtp-sink.

    python bench/send.py [-n 20000] [-c 16] [--size 54000] [--batch 500] [--repeat 1] [--cprofile]
                         [--dots 0] [--sender-only] [--baseline]

Starts `/usr/sbin/smtp-sink` on 127.0.0.1 (installs Debian's postfix package for it if missing;
the Postfix daemon itself is never started), then, in turn:
  * our sender (`newsletter.delivery.sender_for`, as `send` uses it): N messages of SIZE bytes in
    wire form, handed over in batches of BATCH jobs over one open sender, C connections;
  * `smtp-source -s C -m N -l SIZE` (a new connection per message, as Postfix's tool does by
    default) and `smtp-source -d` (connections kept, like ours).
Prints messages/s for each, the ratio, and the peak RSS of this process. Messages are generated
batch by batch, so memory stays what one batch needs; generating them is part of the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.delivery import Job, Outcome, sender_for  # noqa: E402
from newsletter.models import SmtpConfig  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
WORDS = ("model language causal diffusion token agent benchmark reasoning alignment sparse attention "
         "transformer quantization retrieval graph protein vision speech robot policy reward").split()


def ensure_postfix_tools() -> None:
    if os.path.exists(SINK) and os.path.exists(SOURCE):
        return
    print("installing Debian's postfix package for smtp-sink and smtp-source ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "postfix"], check=True, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
    sink = subprocess.Popen([SINK, *user, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise SystemExit("smtp-sink did not start")


def body(size: int, seed: int, dots: int = 0) -> bytes:
    """A multipart/alternative body of about `size` bytes in wire form (CRLF, no line starting
    with "."): quoted-printable-like lines of at most 76 characters, like a 10-paper digest. With
    `dots`, that many lines start with "." (today's renderer gives about two per digest)."""
    rng = random.Random(seed)
    lines = [b"MIME-Version: 1.0", b'Content-Type: multipart/alternative; boundary="==b=="', b"",
             b"--==b==", b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: quoted-printable",
             b""]
    total = sum(len(x) + 2 for x in lines)
    html = False
    while total < size - 200:
        line = " ".join(rng.choice(WORDS) for _ in range(11))[:75].encode()
        if not html and total > size // 3:
            lines += [b"", b"--==b==", b"Content-Type: text/html; charset=utf-8",
                      b"Content-Transfer-Encoding: quoted-printable", b""]
            html = True
        lines.append(b"<p>" + line[:70] + b"</p>=" if html else line + b"=")
        total += len(lines[-1]) + 2
    lines += [b"", b"--==b==--", b""]
    for k in range(dots):
        at = 10 + k * (len(lines) - 20) // max(1, dots)
        lines[at] = b"." + lines[at][1:]
    return b"\r\n".join(lines)


def batches(n: int, size: int, batch: int, dots: int = 0) -> Iterator[list[Job]]:
    shared = body(size, 7, dots)
    sender = "Digest <digest@example.org>"
    for start in range(0, n, batch):
        jobs = []
        for i in range(start, min(n, start + batch)):
            rcpt = f"user{i}@example.net"
            head = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: Your papers, issue {i}\r\n"
                    f"Message-ID: <bench.{i}@example.org>\r\n").encode()
            jobs.append(Job(f"issue-{i}", "digest@example.org", rcpt, head + shared))
        yield jobs


async def run_sender(port: int, n: int, size: int, concurrency: int, batch: int,
                     dots: int) -> tuple[int, list[Outcome]]:
    config = SmtpConfig(host="127.0.0.1", port=port, tls="none", timeout=30, concurrency=concurrency)
    ok = 0
    failed: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        nonlocal ok
        if outcome.ok:
            ok += 1
        else:
            failed.append(outcome)

    async with sender_for(config) as sender:
        for jobs in batches(n, size, batch, dots):
            await sender.deliver(jobs, on_outcome)
    return ok, failed


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def run_sendmail(port: int, n: int, size: int, concurrency: int, batch: int,
                       dots: int) -> tuple[int, list[Outcome]]:
    """The baseline: aiosmtplib's own `sendmail` on `concurrency` kept connections, as the code
    before this sender used it (it re-scans every message for line ends and dots, twice)."""
    import aiosmtplib

    queue: asyncio.Queue[Job] = asyncio.Queue()
    ok = 0

    async def worker() -> None:
        nonlocal ok
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30) as client:
            while not queue.empty():
                job = queue.get_nowait()
                await client.sendmail(job.sender, [job.rcpt], job.message)
                ok += 1

    for jobs in batches(n, size, batch, dots):
        for job in jobs:
            queue.put_nowait(job)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, []


def time_sender(args: argparse.Namespace, port: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, this process) for our sender."""
    profile = cProfile.Profile() if args.cprofile else None
    used = cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if profile:
        profile.enable()
    run = run_sendmail if args.baseline else run_sender
    ok, failed = asyncio.run(run(port, args.n, args.size, args.c, args.batch, args.dots))
    if profile:
        profile.disable()
    seconds = time.perf_counter() - start
    used = cpu(resource.RUSAGE_SELF) - used
    if ok != args.n:
        raise SystemExit(f"only {ok} of {args.n} accepted; first failures: {[f.text for f in failed[:3]]}")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return seconds, used


def time_source(args: argparse.Namespace, port: int, keep: bool) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one smtp-source run."""
    length = len(next(batches(1, args.size, 1))[0].message)
    cmd = [SOURCE, *(["-d"] if keep else []), "-s", str(args.c), "-m", str(args.n), "-l", str(length),
           "-f", "digest@example.org", "-t", "user@example.net", f"127.0.0.1:{port}"]
    used = cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu(resource.RUSAGE_CHILDREN) - used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="messages")
    ap.add_argument("-c", type=int, default=16, help="connections (smtp-source -s)")
    ap.add_argument("--size", type=int, default=54_000, help="bytes per message")
    ap.add_argument("--batch", type=int, default=500, help="jobs handed to deliver() at a time")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of (sender, smtp-source, smtp-source -d)")
    ap.add_argument("--cprofile", action="store_true", help="profile our sender and print the top functions")
    ap.add_argument("--dots", type=int, default=0, help='lines per message that start with "." (stuffed)')
    ap.add_argument("--sender-only", action="store_true", help="skip smtp-source (e.g. under py-spy)")
    ap.add_argument("--baseline", action="store_true",
                    help="time aiosmtplib's plain sendmail() (a new connection set per batch) instead of our sender")
    args = ap.parse_args()
    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    size = len(next(batches(1, args.size, 1))[0].message)
    print(f"{args.n} messages of {size:,} bytes, {args.c} connections, smtp-sink on 127.0.0.1:{port}")
    try:
        ours = "aiosmtplib sendmail" if args.baseline else "sender"
        for r in range(args.repeat):
            results = {ours: time_sender(args, port)}
            if args.sender_only:
                print(f"round {r + 1}: {ours} {args.n / results[ours][0]:,.0f} msg/s", flush=True)
                continue
            results["smtp-source"] = time_source(args, port, keep=False)
            results["smtp-source -d"] = time_source(args, port, keep=True)
            rate = {name: args.n / wall for name, (wall, _) in results.items()}
            print(f"round {r + 1}: " + " | ".join(
                f"{name} {rate[name]:,.0f} msg/s ({used / args.n * 1e6:,.0f} us CPU/msg)"
                for name, (_, used) in results.items()))
            print(f"  ratio {ours} / smtp-source {rate[ours] / rate['smtp-source']:.2f}x, "
                  f"{ours} / smtp-source -d {rate[ours] / rate['smtp-source -d']:.2f}x", flush=True)
    finally:
        sink.terminate()
        sink.wait()
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if shutil.which("nproc"):
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
