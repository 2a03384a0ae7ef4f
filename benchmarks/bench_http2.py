"""HTTP/2 multiplexing against its baselines, all measured in one run (issue 12).

- restiming HTTP/2: 64 concurrent streams on ONE connection (``http2=True``,
  ``max_connections_per_origin=1``);
- baseline 1, restiming HTTP/1.1: 64 connections (``http2=False``, ALPN http/1.1 on the
  same TLS listener);
- baseline 2, httpx with ``http2=True`` (httpcore + h2): 64 concurrent requests, which
  it multiplexes on one connection too.

Strategy: one local nginx (TLS listener with ``http2``, 1 KiB body, no gzip), one asyncio
loop (the stock one for all three: httpx has no uvloop path of its own), each client
set up and warmed once. Rounds are interleaved (A B C, A B C, ...) so load from
elsewhere on the machine hits every variant alike; each round is N requests issued by
64 concurrent workers. Figures per round: requests/s (wall) and client CPU µs/request
(nginx runs in another process). Ratios are per round, reported as median [min..max]
over the rounds: the spread is this machine's noise.

    python benchmarks/bench_http2.py [--rounds 7] [--requests 1280] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import restiming  # noqa: E402


async def _drive(fetch, requests: int, concurrency: int) -> None:
    remaining = requests

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await fetch()

    await asyncio.gather(*[worker() for _ in range(concurrency)])


class Variant:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rates: list[float] = []
        self.cpu_us: list[float] = []
        self.connections = 0

    async def round(self, requests: int, concurrency: int) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        await _drive(self.fetch, requests, concurrency)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.rates.append(requests / wall)
        self.cpu_us.append(cpu / requests * 1e6)


class Restiming(Variant):
    def __init__(self, name, url, ca_file, http2: bool, connections: int) -> None:
        super().__init__(name)
        self.url = url
        self.perf = restiming.Performance(buffer_size=1)
        limits = restiming.Limits(max_connections=connections, max_connections_per_origin=connections)
        self.client = restiming.Client(self.perf, http2=http2, verify=ca_file, limits=limits, timeout=30)

    async def fetch(self):
        r = await self.client.fetch(self.url)
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        self.perf.clear_resource_timings()

    async def close(self):
        self.connections = self.client.open_connections
        await self.client.close()


class Httpx(Variant):
    def __init__(self, name, url, ca_file, concurrency: int) -> None:
        super().__init__(name)
        import httpx

        self.url = url
        self.client = httpx.AsyncClient(http2=True, verify=ca_file, timeout=30,
                                        limits=httpx.Limits(max_connections=concurrency))

    async def fetch(self):
        r = await self.client.get(self.url)
        if r.status_code != 200 or r.http_version != "HTTP/2":
            raise RuntimeError(f"{r.status_code} {r.http_version}")

    async def close(self):
        pool = self.client._transport._pool
        self.connections = len(pool.connections)
        await self.client.aclose()


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}..{max(values):.2f}]"


async def run(rounds: int, requests: int, concurrency: int, nginx, ca) -> str:
    url = nginx.url("/plain/small.txt", h2=True)
    a = Restiming(f"restiming h2, {concurrency} streams / 1 connection", url, ca.ca_file, True, 1)
    b = Restiming(f"restiming http/1.1, {concurrency} connections", url, ca.ca_file, False, concurrency)
    c = Httpx(f"httpx http2=True, {concurrency} concurrent", url, ca.ca_file, concurrency)
    variants = (a, b, c)
    for v in variants:  # warm-up: connections open, caches filled
        await v.round(concurrency * 4, concurrency)
        v.rates.clear()
        v.cpu_us.clear()
    for _ in range(rounds):
        for v in variants:
            await v.round(requests, concurrency)
    for v in variants:
        await v.close()
    lines = [f"{rounds} rounds x {requests} requests, {concurrency} concurrent, 1 KiB body, nginx TLS h2 listener",
             "", "| variant | requests/s median [min..max] | client CPU µs/request | connections |",
             "|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {v.name} | {_spread(v.rates)} | {_spread(v.cpu_us)} | {v.connections} |")
    lines += ["", "Same-run ratios per round, median [min..max]:",
              f"- h2 / http1.1 throughput: {_spread([x / y for x, y in zip(a.rates, b.rates)])}",
              f"- h2 / httpx-h2 throughput: {_spread([x / y for x, y in zip(a.rates, c.rates)])}",
              f"- h2 / http1.1 CPU per request: {_spread([x / y for x, y in zip(a.cpu_us, b.cpu_us)])}",
              f"- h2 / httpx-h2 CPU per request: {_spread([x / y for x, y in zip(a.cpu_us, c.cpu_us)])}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--requests", type=int, default=1280)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args(argv)
    from tests.peers.certs import make_ca
    from tests.peers.nginx import NginxServer

    ca = make_ca()
    try:
        with NginxServer(tls=ca) as nginx:
            print(asyncio.run(run(args.rounds, args.requests, args.concurrency, nginx, ca)))
    finally:
        ca.cleanup()
    return 0


def test_bench_http2_smoke():
    """Under pytest: one short round, to keep the script working."""
    import pytest

    pytest.importorskip("h2")
    pytest.importorskip("httpx")
    from tests.peers.certs import make_ca
    from tests.peers.nginx import NginxServer, nginx_available

    if not nginx_available():
        pytest.skip("nginx binary not found")
    ca = make_ca()
    try:
        with NginxServer(tls=ca) as nginx:
            text = asyncio.run(run(1, 128, 16, nginx, ca))
    finally:
        ca.cleanup()
    assert "h2 / http1.1 throughput" in text


if __name__ == "__main__":
    sys.exit(main())
