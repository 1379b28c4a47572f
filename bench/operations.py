"""Everyday operations on a big list: N store-held subscribers (default 100,000), then

- `newsletter subscribers add --store` of one more subscriber (the whole command, wall time);
- one-click unsubscribe POSTs against `newsletter serve` (latency per request, median and worst of 50);
- `newsletter validate` and `newsletter status --json` (wall time).

    python bench/operations.py [-n 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "bench-secret-0123456789abcdef"


def _cli(project: Path, *args: str, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "newsletter", "--quiet", "--file", str(project), *args], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--subscribers", type=int, default=100_000)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nl-ops-"))
    try:
        project = folder / "subscribers.yaml"
        project.write_text(yaml.safe_dump({"newsletter": {
            "title": "Ops", "sender": "Ops <ops@example.org>", "base_url": "https://digest.example.org",
            "sources": [], "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none"}}, "subscribers": []}))
        (folder / "readers.jsonl").write_text("".join(
            json.dumps({"email": f"r{i:06d}@example.org", "keywords": ['"language model"', "title:diffusion*"]}) + "\n"
            for i in range(args.subscribers)))
        print(f"subscribers {args.subscribers:,} in the store")
        print(f"import                      {_cli(project, 'subscribers', 'import', str(folder / 'readers.jsonl')):6.2f} s")
        print(f"subscribers add --store     {_cli(project, 'subscribers', 'add', 'new@example.org', '--store', '--keyword', 'RAG'):6.2f} s")
        print(f"validate                    {_cli(project, 'validate'):6.2f} s")
        print(f"status --json               {_cli(project, 'status', '--json'):6.2f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
        proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--file", str(project), "serve", "--port",
                                 str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            from newsletter.tokens import sign

            times = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for i in range(50):
                    token = sign(f"r{i * 997 % args.subscribers:06d}@example.org", SECRET)
                    t = time.perf_counter()
                    answer = client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
                    times.append(time.perf_counter() - t)
                    assert answer.status_code == 200, answer.text
            print(f"unsubscribe POST            median {statistics.median(times) * 1000:.1f} ms, "
                  f"worst {max(times) * 1000:.1f} ms (50 requests)")
        finally:
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
