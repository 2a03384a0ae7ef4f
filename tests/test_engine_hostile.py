"""Regression tests for what fuzzing, fault injection and a Chromium side-by-side run
found (issue 8): each failed on the engine before it was fixed. Every case runs on
asyncio and uvloop, and through ``fetch()`` and ``stream()`` where both apply."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
import zlib

import pytest

import restiming
from restiming._engine._http11 import HIGH_WATER
from restiming._engine._pool import Pool
from tests.engine_checks import assert_order, make_client, routes
from tests.peers.scripted import Close, Drain, Send, Sleep, Trickle, interim, response

MiB = 1 << 20


async def _get(client, url, mode, **kwargs):
    """(response-ish, body) through fetch() or stream()."""
    if mode == "fetch":
        r = await client.fetch(url, **kwargs)
        return r, r.body
    async with client.stream(url, **kwargs) as r:
        body = await r.aread()
    return r, body


MODES = ["fetch", "stream"]


# -- finding 3: a redirect never waits for its own body ---------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_redirect_does_not_wait_for_its_body(arun, scripted_server, mode):
    server = scripted_server({
        "/r": [Send(b"HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 10\r\n\r\n"), Sleep(0.2),
               Send(b"0123456789")],
        "/final": [Send(response(200, body=b"final"))],
    })

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            started = time.monotonic()
            r, body = await _get(client, server.url("/r"), mode)
            elapsed = time.monotonic() - started
            e = r.entry
            assert body == b"final" and r.status == 200
            assert elapsed < 0.15, "waited for the redirect's body"
            assert 0 <= e.redirect_end - e.redirect_start < 100
            assert e.fetch_start >= e.redirect_end
            assert not e.connection_reused  # the redirect's connection was not reusable yet
            assert_order(e)

    arun(main)


@pytest.mark.parametrize("mode", MODES)
def test_redirect_with_a_complete_body_reuses_its_connection(arun, scripted_server, mode):
    server = scripted_server({
        "/r": [Send(b"HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 4\r\n\r\nmove")],
        "/final": [Send(response(200, body=b"final"))],
    })

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            r, body = await _get(client, server.url("/r"), mode)
            assert body == b"final" and r.entry.connection_reused
            assert client.open_connections == 1

    arun(main)


# -- finding 6: bytes after a 1xx are not counted against the head limit -----------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [100, 103])
def test_interim_then_large_body_in_one_write(arun, scripted_server, mode, status):
    body = b"b" * 100_000
    server = scripted_server({"/": [Send(interim(status) + response(200, body=body))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, limits=restiming.Limits(max_header_bytes=4096)) as client:
            for _ in range(5):
                r, got = await _get(client, server.url("/"), mode)
                assert got == body

    arun(main)


# -- finding 7: a woken pool waiter that is cancelled passes the wake-up on -------------

class _FakeConn:
    multiplexed = False

    def __init__(self, origin) -> None:
        self.origin = origin
        self.closed = False
        self.idle_since = time.monotonic()

    def is_idle_usable(self, expiry, now) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


def test_cancelled_pool_waiter_passes_the_wakeup_on(arun):
    async def main():
        origin = ("http", "example.test", 80)
        pool = Pool(restiming.Limits(max_connections=1))
        assert await pool.acquire(origin) is None  # the one slot, reserved
        conn = _FakeConn(origin)
        pool.opened(conn)
        first = asyncio.ensure_future(pool.acquire(origin))
        second = asyncio.ensure_future(pool.acquire(origin))
        await asyncio.sleep(0.01)
        pool.release(conn, True)  # wakes `first`...
        first.cancel()            # ...which is cancelled before it runs
        got = await asyncio.wait_for(second, 1.0)
        assert got is conn
        with pytest.raises(asyncio.CancelledError):
            await first

    arun(main)


# -- finding 8: memory per connection is bounded whatever the peer does -----------------

def test_slow_stream_consumer_pauses_reading(arun, scripted_server):
    size = 64 * MiB
    server = scripted_server({"/big": [Send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size),
                                       Send(bytes(size))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            async with client.stream(server.url("/big")) as r:
                conn = r._body.conn
                got = 0
                async for chunk in r.aiter_bytes():
                    got += len(chunk)
                    if got < 4 * MiB:
                        await asyncio.sleep(0.02)  # a slow consumer
                        assert conn.buffered <= HIGH_WATER + 512 * 1024, conn.buffered
                assert got == size

    arun(main)


def test_tiny_chunks_are_coalesced_in_the_stream_buffer(arun, scripted_server):
    body = b"z" * 20_000
    server = scripted_server({"/": [Send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)),
                                    Trickle(body, 0, chunk=7)]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            async with client.stream(server.url("/")) as r:
                while not r._body.conn.state == 3:
                    await asyncio.sleep(0.01)
                assert len(r._body.conn.chunks) <= 4  # not one object per 7 bytes
                assert await r.aread() == body

    arun(main)


# -- finding 5 and 11: every coding decoded in bounded pieces, and decoded right ---------

def _bomb(coding: str, size: int) -> bytes:
    zero = bytes(MiB)
    if coding == "br":
        brotli = pytest.importorskip("brotli")
        c = brotli.Compressor(quality=5, lgwin=24)  # ~200 bytes per 256 MiB
        return b"".join(c.process(zero) for _ in range(size // MiB)) + c.finish()
    if coding == "zstd":
        zstandard = pytest.importorskip("zstandard")
        c = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(c.compress(zero) for _ in range(size // MiB)) + c.flush()
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(c.compress(zero) for _ in range(size // MiB)) + c.flush()


_BOMB_CLIENT = """
import asyncio, resource, sys
import restiming
async def main():
    async with restiming.Client(restiming.Performance(), timeout=30.0) as client:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            if sys.argv[2] == "fetch":
                await client.fetch(sys.argv[1])
            else:
                async with client.stream(sys.argv[1]) as r:
                    async for _ in r.aiter_bytes():
                        pass
        except restiming.DecompressionLimit:
            print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
            return
        print("no error")
asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_decompression_bombs_stop_with_bounded_memory(scripted_server, coding, mode):
    """A body decoding to 1 GiB raises DecompressionLimit while the process grows by
    less than 48 MiB (measured in a fresh process: its peak RSS)."""
    payload = _bomb(coding, 1024 * MiB)
    server = scripted_server({"/": [Send(response(200, [("content-encoding", coding)], payload))]})
    out = subprocess.run([sys.executable, "-c", _BOMB_CLIENT, server.url("/"), mode], capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip()
    assert out != "no error"
    assert int(out) < 48, f"peak RSS grew by {out} MiB"


@pytest.mark.parametrize("mode", MODES)
def test_every_gzip_member_is_decoded(arun, scripted_server, mode):
    one = b"member " * 2571
    payload = gzip.compress(one) + gzip.compress(one)
    server = scripted_server({"/": [Send(response(200, [("content-encoding", "gzip")], payload))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            r, body = await _get(client, server.url("/"), mode)
            assert body == one + one and r.entry.decoded_body_size == 2 * len(one)

    arun(main)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wrapped", [True, False], ids=["zlib", "raw"])
def test_deflate_with_a_one_byte_first_chunk(arun, scripted_server, mode, wrapped):
    body = b"deflated " * 1000
    c = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    payload = c.compress(body) + c.flush()
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: %d\r\n\r\n" % len(payload)
    server = scripted_server({"/": [Send(head + payload[:1]), Sleep(0.05), Send(payload[1:])]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            _, got = await _get(client, server.url("/"), mode)
            assert got == body

    arun(main)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_truncated_compressed_body_is_a_protocol_error(arun, scripted_server, mode, coding):
    body = os.urandom(20_000).hex().encode()
    if coding == "gzip":
        payload = gzip.compress(body)
    elif coding == "deflate":
        payload = zlib.compress(body)
    elif coding == "br":
        payload = pytest.importorskip("brotli").compress(body)
    else:
        payload = pytest.importorskip("zstandard").ZstdCompressor().compress(body)
    cut = payload[: len(payload) * 2 // 3]  # Content-Length matches the cut stream
    server = scripted_server({"/": [Send(response(200, [("content-encoding", coding)], cut))], "/ok": [
        Send(response(200, body=b"fine"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            with pytest.raises(restiming.ProtocolError):
                await _get(client, server.url("/"), mode)
            (e,) = perf.get_entries()
            assert e.error == "protocol"

    arun(main)


# -- finding 10: every caller mistake is typed and raised before any socket -------------

BAD_CALLS = {
    "lone-surrogate-url": ({"url": "http://127.0.0.1:{port}/\ud800"}, restiming.InvalidURL),
    "method-with-space": ({"method": "GE T"}, restiming.InvalidRequest),
    "method-with-crlf": ({"method": "GET\r\nX: y"}, restiming.InvalidRequest),
    "surrogate-initiator": ({"initiator_type": "\ud800"}, restiming.InvalidRequest),
    "negative-intended-start": ({"intended_start": -5}, restiming.InvalidRequest),
    "bad-content-length": ({"headers": {"Content-Length": "abc"}}, restiming.InvalidRequest),
    "conflicting-content-lengths": ({"headers": [("Content-Length", "1"), ("Content-Length", "2")],
                                     "body": b"x"}, restiming.InvalidRequest),
    "two-hosts": ({"headers": [("Host", "a"), ("Host", "b")]}, restiming.InvalidRequest),
    "transfer-encoding-gzip": ({"headers": {"Transfer-Encoding": "gzip"}}, restiming.InvalidRequest),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_caller_mistakes_are_typed_and_touch_nothing(arun, scripted_server, case, warm):
    kwargs, error = BAD_CALLS[case]
    server = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            if warm:
                await client.fetch(server.url("/ok"))
            before = (server.connections, len(perf.get_entries()), client.open_connections)
            args = dict(kwargs)
            url = args.pop("url", server.url("/ok")).format(port=server.port)
            with pytest.raises(error) as info:
                await client.fetch(url, **args)
            assert isinstance(info.value, ValueError)
            assert (server.connections, len(perf.get_entries()), client.open_connections) == before
            if warm:  # the pooled connection survived
                assert (await client.fetch(server.url("/ok"))).entry.connection_reused

    arun(main)


# -- finding 12: a server that answers before the request is written --------------------

def test_early_answer_never_gives_a_negative_wait(arun, scripted_server):
    early = response(200, [("connection", "close")], b"early")
    server = scripted_server([], on_connect=lambda index: [Send(early), Close()])

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            for _ in range(60):
                r = await client.fetch(server.url("/"))
                e = r.entry
                assert r.body == b"early"
                assert e.final_response_headers_start >= e.request_start >= e.connect_end
                assert_order(e)

    arun(main)


# -- finding 18: the foreign cause of a network error is kept ---------------------------

def test_refused_connection_keeps_its_oserror_cause(arun):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            with pytest.raises(restiming.ConnectError) as info:
                await client.fetch(f"http://127.0.0.1:{port}/")
            assert isinstance(info.value.__cause__, ConnectionRefusedError)
            assert "connection refused" in str(info.value)

    arun(main)


def test_untrusted_certificate_keeps_its_ssl_cause(arun, scripted_server, tls_ca):
    import ssl

    server = scripted_server(routes(), tls=tls_ca.server_context())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:  # system trust store: our CA is unknown
            with pytest.raises(restiming.TLSError) as info:
                await client.fetch(server.url("/ok"))
            assert isinstance(info.value.__cause__, ssl.SSLError)

    arun(main)


def test_resolver_error_keeps_its_cause(arun):
    class Broken:
        async def resolve(self, host, port):
            raise OSError("resolver exploded")

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, resolver=Broken()) as client:
            with pytest.raises(restiming.DNSError) as info:
                await client.fetch("http://name.test/")
            assert isinstance(info.value.__cause__, OSError)

    arun(main)


@pytest.mark.parametrize("make", [
    lambda: restiming.Client(restiming.Performance(), timeout=0),
    lambda: restiming.Client(restiming.Performance(), max_redirects=-1),
    lambda: restiming.Client(restiming.Performance(), verify="/nonexistent/ca.pem"),
    lambda: restiming.Client(restiming.Performance(), proxy="socks5://127.0.0.1:1"),
    lambda: restiming.Timeout(connect=-1),
    lambda: restiming.Limits(max_connections=0),
    lambda: restiming.CachingResolver(ttl=-1),
], ids=["timeout", "max_redirects", "verify", "proxy", "Timeout", "Limits", "resolver-ttl"])
def test_bad_configuration_is_a_typed_caller_error(make):
    """SPEC §2: one hierarchy; a caller's bad value is InvalidRequest (also ValueError)."""
    with pytest.raises(restiming.InvalidRequest) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, restiming.RestimingError)
