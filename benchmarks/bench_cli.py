"""``restiming bench`` throughput against local nginx, next to wrk, in one run; and
the load generator's memory over a long run (peak RSS must stay flat).

Run as a script for the README table:

    python benchmarks/bench_cli.py            # throughput, 1 and 2 workers vs wrk
    python benchmarks/bench_cli.py --memory   # adds 100k vs 1M request runs (peak RSS)

or under pytest-benchmark: ``python -m pytest benchmarks/bench_cli.py --benchmark-enable -s``.
Baseline: wrk (C, no per-request records) on the same nginx, same connections.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.peers.nginx import NginxServer  # noqa: E402

CONNECTIONS = 64
REQUESTS = 40_000


def restiming_bench(url: str, workers: int, requests: int = REQUESTS, connections: int = CONNECTIONS) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "s.json")
        proc = subprocess.run(
            [sys.executable, "-m", "restiming", "bench", url, "-n", str(requests), "-c", str(connections),
             "--workers", str(workers), "--no-progress", "--summary", summary],
            capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout + proc.stderr)
        with open(summary) as f:
            return json.load(f)


def wrk(url: str, connections: int = CONNECTIONS, seconds: int = 5, threads: int = 1) -> float:
    if not shutil.which("wrk"):
        return float("nan")
    proc = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url],
                          capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout)
    return float(match.group(1)) if match else float("nan")


def throughput_table() -> str:
    with NginxServer() as nginx:
        url = nginx.url("/small.txt")
        ceiling = wrk(url)
        rows = []
        for workers in (1, 2):
            s = restiming_bench(url, workers)
            ok = s["completed"] == s["sent"] == REQUESTS
            rows.append((workers, s["throughput_rps"], s["phases"]["total"]["p50_ms"],
                         s["phases"]["total"]["p99_ms"], s["peak_rss_mb"], ok))
    lines = [f"restiming bench vs wrk, nginx /small.txt (1 KiB), {CONNECTIONS} connections, "
             f"{REQUESTS} requests per restiming run, wrk -t1 -c{CONNECTIONS} -d5s",
             "", "| load generator | req/s | vs wrk | p50 ms | p99 ms | every entry recorded |",
             "|---|---:|---:|---:|---:|---|",
             f"| wrk (ceiling) | {ceiling:,.0f} | 1.00 | | | no |"]
    for workers, rps, p50, p99, _rss, ok in rows:
        lines.append(f"| restiming bench --workers {workers} | {rps:,.0f} | {rps / ceiling:.2f} | "
                     f"{p50:.2f} | {p99:.2f} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def memory_table() -> str:
    with NginxServer() as nginx:
        url = nginx.url("/small.txt")
        rows = []
        for n in (100_000, 1_000_000):
            s = restiming_bench(url, 2, requests=n)
            rows.append((n, s["throughput_rps"], s["peak_rss_mb"]))
    lines = ["", "| requests | req/s | parent peak RSS MiB | worker peak RSS MiB |", "|---:|---:|---:|---:|"]
    for n, rps, rss in rows:
        lines.append(f"| {n:,} | {rps:,.0f} | {rss['parent']:.1f} | "
                     f"{', '.join(f'{w:.1f}' for w in rss['workers'])} |")
    return "\n".join(lines)


def test_bench_cli_throughput(benchmark):
    table = benchmark.pedantic(throughput_table, rounds=1, iterations=1)
    print("\n" + table)


if __name__ == "__main__":
    print(throughput_table())
    if "--memory" in sys.argv:
        print(memory_table())
