"""No file descriptor, task or pooled connection outlives its fetch (SPEC.md §4).

One client runs 1,000 fetches that mix successes with every failure kind — 404s,
resets, malformed responses, short bodies, read timeouts, refused connections, TLS
failures, oversized heads, redirect loops, cancellations, streams closed early — in
concurrent batches. Every fetch must end with its expected outcome and one entry;
afterwards the client holds no connection and ``arun`` checks that the process's
descriptors and the loop's tasks are back to where they started.
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

import restiming
from tests.engine_checks import make_client
from tests.peers.scripted import Close, Drain, Reset, Send, response

pytestmark = pytest.mark.slow

TOTAL = 1000
SHORT = restiming.Timeout(connect=1.0, read=0.05, write=1.0, pool=2.0, total=2.0)


def _routes():
    return {
        "/ok": [Send(response(200, [("content-type", "text/plain")], b"ok"))],
        "/gzip": [Send(response(200, body=b"zip " * 2000, gzip=True, chunked=True, chunk_size=512))],
        "/404": [Send(response(404, body=b"missing"))],
        "/500": [Send(response(500, body=b"broken"))],
        "/reset": [Reset()],
        "/malformed": [Send(b"HTTP/1.1 ??? nope\r\n\r\n"), Close()],
        "/short": [Send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc"), Close()],
        "/hang": [Drain()],
        "/big-head": [Send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n")],
        "/loop": [Send(response(302, [("location", "/loop")]))],
        "/stream": [Send(response(200, body=b"s" * 200_000))],
    }


def test_thousand_mixed_fetches_leak_nothing(arun, scripted_server, tls_ca, free_port):
    server = scripted_server(_routes())
    tls_good = scripted_server(_routes(), tls=tls_ca.server_context())
    tls_bad = scripted_server(_routes(), tls=tls_ca.server_context(("wrong.test",)))
    refused = f"http://127.0.0.1:{free_port()}/"

    # kind -> (expected outcome, coroutine factory)
    def plan(client):
        async def fetch(url, **kwargs):
            response = await client.fetch(url, **kwargs)
            return response.status

        async def cancel():
            task = asyncio.ensure_future(client.fetch(server.url("/hang")))
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return "cancelled"
            return "not cancelled"

        async def stream_closed_early():
            async with client.stream(server.url("/stream")) as response:
                async for _chunk in response.aiter_bytes():
                    break
            return "closed-early" if response.entry is not None else "no entry"

        return {
            "ok": (200, lambda: fetch(server.url("/ok"))),
            "ok2": (200, lambda: fetch(server.url("/ok"))),
            "gzip": (200, lambda: fetch(server.url("/gzip"))),
            "post": (200, lambda: fetch(server.url("/ok"), method="POST", body=b"x" * 5000)),
            "404": (404, lambda: fetch(server.url("/404"))),
            "500": (500, lambda: fetch(server.url("/500"))),
            "reset": ("reset", lambda: fetch(server.url("/reset"))),
            "malformed": ("protocol", lambda: fetch(server.url("/malformed"))),
            "short": ("protocol", lambda: fetch(server.url("/short"))),
            "timeout": ("timeout", lambda: fetch(server.url("/hang"), timeout=SHORT)),
            "refused": ("connect", lambda: fetch(refused)),
            "tls-ok": (200, lambda: fetch(tls_good.url("/ok"))),
            "tls-fail": ("tls", lambda: fetch(tls_bad.url("/ok"))),
            "big-head": ("limit", lambda: fetch(server.url("/big-head"))),
            "loop": ("too_many_redirects", lambda: fetch(server.url("/loop"))),
            "invalid": ("invalid", lambda: fetch("http://bad host/")),
            "cancel": ("cancelled", cancel),
            "stream": ("closed-early", stream_closed_early),
            "dns": ("dns", lambda: fetch("http://unresolvable.test/")),
            "ok3": (200, lambda: fetch(server.url("/ok"))),
        }

    class Resolver:
        async def resolve(self, host, port):
            if host == "unresolvable.test":
                raise OSError("no such host")
            return [(2, ("127.0.0.1", port))]

    async def main():
        perf = restiming.Performance()
        client = make_client(perf, verify=tls_ca.ca_file, resolver=Resolver())
        cases = plan(client)
        kinds = list(cases)
        assert TOTAL % len(kinds) == 0
        outcomes: collections.Counter = collections.Counter()
        mismatches = []
        entries = []
        started = time.monotonic()

        async def run(kind):
            expected, make = cases[kind]
            detail = None
            try:
                got = await make()
            except restiming.InvalidURL:
                got = "invalid"
            except restiming.FetchError as exc:
                got, detail = exc.kind, repr(exc)
                assert exc.entry is not None and exc.entry.error == exc.kind
            if got != expected:
                mismatches.append((kind, expected, got, detail))
            outcomes[kind] += 1

        for _ in range(TOTAL // len(kinds)):
            await asyncio.gather(*(run(kind) for kind in kinds))
            entries.extend(perf.drain())
        elapsed = time.monotonic() - started

        assert not mismatches, mismatches[:10]
        assert sum(outcomes.values()) == TOTAL
        # one entry per fetch that started (invalid URLs make none)
        per_batch = len(kinds) - 1
        assert len(entries) == per_batch * (TOTAL // len(kinds))
        errors = collections.Counter(e.error for e in entries)
        rounds = TOTAL // len(kinds)
        for kind in ("reset", "connect", "tls", "limit", "too_many_redirects", "dns", "cancelled"):
            assert errors[kind] == rounds, (kind, errors)
        assert errors["protocol"] == 2 * rounds and errors["timeout"] == rounds
        assert errors[None] == 9 * rounds
        assert perf.dropped_entries == 0
        assert client.open_connections > 0  # keep-alive connections stayed pooled
        await client.close()
        assert client.open_connections == 0
        assert elapsed < 20, f"{TOTAL} fetches took {elapsed:.1f} s"

    arun(main)


def test_close_with_fetches_in_flight_leaks_nothing(arun, scripted_server, tls_ca):
    """close() fails every in-flight fetch at once: reading, mid TLS handshake, resolving
    a name, waiting for the pool."""
    server = scripted_server(_routes())
    stalled = scripted_server(_routes(), tls=tls_ca.server_context(),
                              on_connect=lambda index: [Drain()])

    class SlowResolver:
        async def resolve(self, host, port):
            if host == "slow-dns.test":
                await asyncio.sleep(30)
            return [(2, ("127.0.0.1", port))]

    async def main():
        perf = restiming.Performance()
        client = make_client(perf, verify=tls_ca.ca_file, resolver=SlowResolver(),
                             limits=restiming.Limits(max_connections=20), timeout=30.0)
        tasks = [asyncio.ensure_future(client.fetch(server.url("/hang"))) for _ in range(12)]
        tasks += [asyncio.ensure_future(client.fetch(stalled.url("/ok"))) for _ in range(5)]
        tasks += [asyncio.ensure_future(client.fetch("http://slow-dns.test/")) for _ in range(3)]
        tasks += [asyncio.ensure_future(client.fetch(server.url("/ok"))) for _ in range(10)]  # pool
        while len(server.requests) < 12 or stalled.connections < 5:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await client.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert time.monotonic() - started < 1.0  # nobody waited for a timeout
        for result in results:
            assert isinstance(result, (restiming.FetchError, restiming.ClientClosed)), result
            assert result.entry is not None and result.entry.error is not None
        kinds = collections.Counter(r.entry.error for r in results)
        assert kinds == {"reset": 12, "cancelled": 18}, kinds
        assert client.open_connections == 0
        assert len(perf.get_entries()) == 30

    arun(main)
