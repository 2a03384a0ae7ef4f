"""What the adapters cost, each against its named baseline, all measured in one run.

- aiohttp: per-request client CPU of plain aiohttp (the baseline), of aiohttp with a
  minimal hand-written TraceConfig that only appends ``perf_counter_ns()`` pairs for
  the same signals, and of aiohttp with ``restiming.adapters.aiohttp.trace_config``.
- httpx: httpx's default transport (the baseline) vs ``restiming.adapters.httpx``'s
  ``AsyncTransport`` (restiming's native ``Client`` shown for reference).
- OTel: CPU per entry of ``SpanExporter.export`` vs the baseline of starting and ending
  one bare span per entry, both with the SDK's in-memory span exporter.

Strategy: every client is set up once on one asyncio loop against one local nginx
(keep-alive, 1 KiB body); rounds are interleaved (A B C, A B C, ...) so that load from
elsewhere on the machine hits every variant alike. Each round is N sequential requests;
the figure is the client process's CPU time per request (nginx runs in another process),
which other load disturbs less than wall time. Ratios are per round pair, reported as
median [min..max] over the rounds: the spread is the noise of this machine.

    python benchmarks/bench_adapters.py [--rounds 7] [--requests 300]
    python -m pytest benchmarks/bench_adapters.py --benchmark-enable -s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_harness as h  # noqa: E402

try:
    import pytest
except ImportError:  # pragma: no cover - the plain-script path needs no pytest
    pytest = None

_SIGNALS = ("on_request_start", "on_connection_create_start", "on_connection_create_end",
            "on_dns_resolvehost_start", "on_dns_resolvehost_end", "on_dns_cache_hit",
            "on_connection_reuseconn", "on_request_headers_sent", "on_request_redirect",
            "on_request_end", "on_request_exception")


def minimal_trace_config():
    """The hand-rolled baseline: one (signal, perf_counter_ns) pair per signal."""
    import aiohttp

    config = aiohttp.TraceConfig()
    for signal in _SIGNALS:
        async def stamp(session, ctx, params, _name=signal):
            stamps = getattr(ctx, "stamps", None)
            if stamps is None:
                stamps = ctx.stamps = []
            stamps.append((_name, time.perf_counter_ns()))
        getattr(config, signal).append(stamp)
    return config


class Variants:
    """Every HTTP client variant, open on the running loop."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self):
        import aiohttp
        import httpx

        import restiming
        from restiming.adapters.aiohttp import trace_config
        from restiming.adapters.httpx import AsyncTransport

        self.perf = restiming.Performance(buffer_size=250)
        self.sessions = {
            "aiohttp": aiohttp.ClientSession(),
            "aiohttp+perf_counter trace": aiohttp.ClientSession(trace_configs=[minimal_trace_config()]),
            "aiohttp+restiming trace": aiohttp.ClientSession(trace_configs=[trace_config(self.perf)]),
        }
        self.httpx = {
            "httpx": httpx.AsyncClient(),
            "httpx+restiming transport": httpx.AsyncClient(transport=AsyncTransport(self.perf)),
        }
        self.native = restiming.Client(self.perf)
        return self

    async def __aexit__(self, *exc):
        for s in self.sessions.values():
            await s.close()
        for c in self.httpx.values():
            await c.aclose()
        await self.native.close()

    def runners(self):
        url = self.url
        out = {}
        for name, session in self.sessions.items():
            async def run(n, session=session):
                for _ in range(n):
                    async with session.get(url) as r:
                        await r.read()
            out[name] = run
        for name, client in self.httpx.items():
            async def run(n, client=client):
                for _ in range(n):
                    (await client.get(url)).content
            out[name] = run

        async def native(n):
            for _ in range(n):
                await self.native.fetch(url)
        out["restiming Client (reference)"] = native
        return out

    def drain(self):
        self.perf.drain()  # keep the timeline from filling up (and firing buffer-full)


async def _measure_http(url: str, rounds: int, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    async with Variants(url) as v:
        runners = v.runners()
        for run in runners.values():  # warm-up: connections, caches
            await run(20)
        v.drain()
        for _ in range(rounds):
            for name, run in runners.items():
                cpu = time.process_time()
                await run(requests)
                samples.setdefault(name, []).append((time.process_time() - cpu) / requests * 1e6)
                v.drain()
    return samples


def _fake_entries(n: int):
    import restiming

    perf = restiming.Performance(buffer_size=max(n, 1))
    entries = []
    for i in range(n):
        rec = perf.begin(f"http://127.0.0.1:8080/item/{i}")
        for phase in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
                      "request_start", "request_end", "final_response_headers_start"):
            rec.stamp(phase)
        entries.append(rec.finish(response_status=200, encoded_body_size=1024, decoded_body_size=1024,
                                  next_hop_protocol="http/1.1", remote_address="127.0.0.1:8080"))
    return perf, entries


def _measure_otel(rounds: int, n: int) -> dict[str, list[float]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from restiming.adapters.otel import SpanExporter

    perf, entries = _fake_entries(n)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    exporter = SpanExporter(perf, tracer_provider=tracer_provider, meter_provider=meter_provider)
    tracer = tracer_provider.get_tracer("baseline")

    def bare():
        for e in entries:
            tracer.start_span("HTTP", kind=SpanKind.CLIENT).end()

    def export():
        exporter.export(entries)

    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, fn in (("bare span per entry", bare), ("SpanExporter.export", export)):
            cpu = time.process_time()
            fn()
            samples.setdefault(name, []).append((time.process_time() - cpu) / n * 1e6)
            spans.clear()
    exporter.close()
    return samples


def _ratio_line(samples, name: str, baseline: str) -> str:
    ratios = [a / b for a, b in zip(samples[name], samples[baseline])]
    extra = [a - b for a, b in zip(samples[name], samples[baseline])]
    return (f"{name} / {baseline}: x{statistics.median(ratios):.2f} "
            f"[{min(ratios):.2f}..{max(ratios):.2f}], {statistics.median(extra):+.1f} us/request "
            f"[{min(extra):+.1f}..{max(extra):+.1f}]")


def _environment() -> str:
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"{os.cpu_count()} CPUs", f"Python {platform.python_version()}"]
    for dist in ("aiohttp", "httpx", "opentelemetry-sdk"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return "_" + ", ".join(parts) + "; nginx 1 worker on the same machine; nothing pinned._"


def run(rounds: int = 7, requests: int = 300, entries: int = 2000, url: str | None = None) -> str:
    server = None
    if url is None:
        server = h.BenchNginx().start()
        url = server.url(h.PATH)
    try:
        http = asyncio.run(_measure_http(url, rounds, requests))
    finally:
        if server is not None:
            server.cleanup()
    otel = _measure_otel(rounds, entries)
    lines = [f"Client CPU per request (us), median [min..max] of {rounds} interleaved rounds "
             f"of {requests} keep-alive GETs of {h.PATH} from a local nginx; stock asyncio loop.", ""]
    lines.append("| variant | CPU us/request |")
    lines.append("|---|---|")
    for name, values in {**http, **otel}.items():
        unit = " (per entry)" if name in otel else ""
        lines.append(f"| {name}{unit} | {statistics.median(values):.1f} [{min(values):.1f}..{max(values):.1f}] |")
    lines += ["", "Same-run ratios (per round, median [min..max]) and added CPU:",
              "- " + _ratio_line(http, "aiohttp+perf_counter trace", "aiohttp"),
              "- " + _ratio_line(http, "aiohttp+restiming trace", "aiohttp"),
              "- " + _ratio_line(http, "aiohttp+restiming trace", "aiohttp+perf_counter trace"),
              "- " + _ratio_line(http, "httpx+restiming transport", "httpx"),
              "- " + _ratio_line(http, "restiming Client (reference)", "httpx"),
              "- " + _ratio_line(otel, "SpanExporter.export", "bare span per entry").replace("request", "entry"),
              "", _environment()]
    return "\n".join(lines)


if pytest is not None:
    def test_adapter_overhead(report):
        if h.find_nginx() is None:
            pytest.skip("nginx binary not found")
        for name in ("aiohttp", "httpx", "opentelemetry.sdk"):
            pytest.importorskip(name)
        text = run(rounds=5, requests=200, entries=1000)
        for line in text.splitlines():
            report(line)
        assert "aiohttp+restiming trace / aiohttp" in text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--entries", type=int, default=2000)
    args = parser.parse_args(argv)
    print(run(args.rounds, args.requests, args.entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
