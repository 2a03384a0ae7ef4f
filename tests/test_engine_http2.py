"""HTTP/2 over TLS (issue 12): against real nginx with ``http2`` on a TLS listener, and
against our own h2 server (``tests/peers/h2server.py``) for the cases nginx cannot be
made to produce: 103 Early Hints, RST_STREAM, REFUSED_STREAM, GOAWAY mid-flight, a
flow-control window that never opens, a DATA flood. Runs on asyncio and uvloop.
https://www.rfc-editor.org/rfc/rfc9113
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc

import pytest

import restiming
from tests.engine_checks import (
    TRANSFER_SIZE_OVERHEAD,
    assert_fresh,
    assert_opaque,
    assert_order,
    assert_reused,
    assert_usable,
    expect_error,
    make_client,
    quick,
)

try:
    import h2  # noqa: F401
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("h2 is not installed (pip install restiming[http2])", allow_module_level=True)

from restiming._engine._http2 import STREAM_WINDOW  # noqa: E402
from tests.peers.h2server import ErrorCodes, SettingCodes  # noqa: E402


def h2_client(perf, ca, **kwargs):
    kwargs.setdefault("verify", ca.ca_file)
    return make_client(perf, http2=True, **kwargs)


# ------------------------------------------------------------------ real nginx
@pytest.mark.nginx
def test_nginx_100_concurrent_fetches_share_one_connection(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance(buffer_size=1000)
        async with h2_client(perf, tls_ca) as client:
            responses = await asyncio.gather(*[client.fetch(nginx.url("/plain/small.txt", h2=True))
                                               for _ in range(100)])
            assert client.open_connections == 1
        entries = [r.entry for r in responses]
        assert {e.next_hop_protocol for e in entries} == {"h2"}
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert len({e.connection_id for e in entries}) == 1
        assert all(r.body == nginx.files["small.txt"] for r in responses)
        # Each stream is stamped on its own: 100 distinct request starts.
        assert len({e.request_start for e in entries}) == 100
        fresh = [e for e in entries if not e.connection_reused]
        assert len(fresh) == 1
        assert_fresh(fresh[0], tls=True)
        for e in entries:
            if e.connection_reused:
                assert_reused(e, tls=True)
            assert e.request_start <= e.request_end <= e.response_end
            assert e.encoded_body_size == e.decoded_body_size == len(nginx.files["small.txt"])
            assert e.bytes_received > e.encoded_body_size and e.bytes_sent > 0

    arun(main)


@pytest.mark.nginx
def test_nginx_reuse_gzip_redirects_and_server_timing(arun, nginx, tls_ca):
    html = nginx.files["text.html"]

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            first = await client.fetch(nginx.url("/small.txt", h2=True))
            gz = await client.fetch(nginx.url("/text.html", h2=True))
            redirected = await client.fetch(nginx.url("/redirect/3", h2=True))
            st = await client.fetch(nginx.url("/st", h2=True))
            posted = await client.fetch(nginx.url("/post", h2=True), method="POST", body=b"p" * 1000)
            assert client.open_connections == 1
        assert_fresh(first.entry, tls=True)
        assert first.entry.next_hop_protocol == "h2"
        for r in (gz, st, posted):
            assert_reused(r.entry, tls=True)
            assert r.entry.connection_id == first.entry.connection_id
        e = gz.entry
        assert gz.body == html and e.content_encoding == "gzip" and e.content_type == "text/html"
        assert e.decoded_body_size == len(html) and 0 < e.encoded_body_size < len(html)
        assert e.transfer_size == e.encoded_body_size + TRANSFER_SIZE_OVERHEAD
        r = redirected.entry
        assert redirected.status == 200 and len(redirected.history) == 3
        assert r.redirect_start == r.start_time and 0 < r.redirect_end <= r.fetch_start
        assert_order(r)
        assert [(t.name, t.duration) for t in st.entry.server_timing] == [("db", 53.2), ("cache", 0.0)]
        assert posted.status == 200 and posted.entry.request_end >= posted.entry.request_start

    arun(main)


@pytest.mark.nginx
def test_nginx_tao_on_h2(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance(origin="https://example.test")
        async with h2_client(perf, tls_ca) as client:
            star = await client.fetch(nginx.url("/tao/star", h2=True))
            none = await client.fetch(nginx.url("/tao/none", h2=True))
        assert star.entry.request_start > 0 and star.entry.next_hop_protocol == "h2"
        assert_opaque(none.entry, status=200)

    arun(main)


@pytest.mark.nginx
def test_alpn_falls_back_to_http11(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            h1 = await client.fetch(nginx.url("/small.txt", https=True))   # no h2 on this listener
            h1b = await client.fetch(nginx.url("/small.txt", https=True))
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            off = await client.fetch(nginx.url("/small.txt", h2=True))     # http2=False
        assert h1.entry.next_hop_protocol == h1b.entry.next_hop_protocol == "http/1.1"
        assert h1.http_version == "HTTP/1.1"
        assert_reused(h1b.entry, tls=True)
        assert off.entry.next_hop_protocol == "http/1.1"

    arun(main)


@pytest.mark.nginx
def test_nginx_stream_large_body_and_cross_origin_redirect(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            async with client.stream(nginx.url("/large.bin", h2=True)) as response:
                body = await response.aread()
            cross = await client.fetch(nginx.url("/cross-h2", h2=True))
            assert client.open_connections == 2   # 127.0.0.1 and localhost: two origins
        assert body == nginx.files["large.bin"]
        assert response.entry.encoded_body_size == len(body)
        assert response.entry.next_hop_protocol == "h2"
        assert cross.body == nginx.files["small.txt"] and cross.entry.next_hop_protocol == "h2"
        assert_order(cross.entry)

    arun(main)


# ------------------------------------------------------------ our own h2 server
def test_early_hints_stamp_first_interim(arun, h2_server, tls_ca):
    async def handler(peer, request):
        await peer.send_headers(request.stream_id, 100)   # not counted (SPEC §3)
        await asyncio.sleep(0.02)
        await peer.send_headers(request.stream_id, 103, [("link", "</style.css>; rel=preload")])
        await asyncio.sleep(0.05)
        await peer.respond(request.stream_id, 200, b"hinted")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            r = await client.fetch(server.url("/hints"))
        e = r.entry
        assert r.body == b"hinted" and e.next_hop_protocol == "h2"
        assert e.first_interim_response_start > e.request_start
        assert e.final_response_headers_start - e.first_interim_response_start >= 40
        assert e.response_start == e.first_interim_response_start
        assert_order(e)

    arun(main)


def test_rst_stream_is_a_typed_error_and_the_connection_lives_on(arun, h2_server, tls_ca):
    async def handler(peer, request):
        if request.path == "/reset":
            peer.reset(request.stream_id, ErrorCodes.INTERNAL_ERROR)
        else:
            await peer.respond(request.stream_id, 200, b"fine")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            await assert_usable(client, server.url("/ok"), b"fine")
            exc = await expect_error(client, perf, server.url("/reset"), restiming.StreamReset, "reset")
            assert exc.code == ErrorCodes.INTERNAL_ERROR and exc.code_name == "INTERNAL_ERROR"
            r = await assert_usable(client, server.url("/ok"), b"fine")
            assert r.entry.connection_reused and client.open_connections == 1
        assert server.connections == 1

    arun(main)


def test_refused_stream_is_retried_once_on_a_new_connection(arun, h2_server, tls_ca):
    async def handler(peer, request):
        if peer.index == 0:
            peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)
        else:
            await peer.respond(request.stream_id, 200, b"second")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            r = await client.fetch(server.url("/x"), method="POST", body=b"not processed: safe to retry")
        assert r.body == b"second" and r.entry.error is None
        assert_fresh(r.entry, tls=True)   # the stamps describe the new attempt
        assert server.connections == 2

    arun(main)


def test_refused_twice_fails_typed(arun, h2_server, tls_ca):
    async def handler(peer, request):
        peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            exc = await expect_error(client, perf, server.url("/x"), restiming.StreamRefused, "reset")
            assert exc.code_name == "REFUSED_STREAM"
        assert server.connections == 2

    arun(main)


def test_goaway_mid_flight(arun, h2_server, tls_ca):
    """GOAWAY(last_stream_id=1) with streams 1 and 3 in flight: stream 1 completes on
    the old connection, stream 3 (never processed) is retried on a new one."""
    started = []

    async def handler(peer, request):
        if peer.index == 0:
            started.append(request.stream_id)
            while len(started) < 2:
                await asyncio.sleep(0.005)
            if request.stream_id == 1:
                peer.goaway(1)
                await asyncio.sleep(0.02)
                await peer.respond(1, 200, b"one")
            return
        await peer.respond(request.stream_id, 200, b"retried")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            a, b = await asyncio.gather(client.fetch(server.url("/a")), client.fetch(server.url("/b")))
            bodies = sorted([a.body, b.body])
            assert bodies == [b"one", b"retried"]
            # The old connection is closed once its last stream finished.
            await asyncio.sleep(0.05)
            assert client.open_connections == 1
            await assert_usable(client, server.url("/c"), b"retried")
        assert server.connections == 2

    arun(main)


def test_goaway_with_error_then_close_fails_typed(arun, h2_server, tls_ca):
    async def handler(peer, request):
        if request.path == "/die":
            peer.goaway(request.stream_id, ErrorCodes.INTERNAL_ERROR)
            await asyncio.sleep(0.01)
            peer.close()
        else:
            await peer.respond(request.stream_id, 200, b"fine")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            await expect_error(client, perf, server.url("/die"), restiming.ConnectionTerminated, "reset",
                               method="POST", body=b"x")
            await assert_usable(client, server.url("/ok"), b"fine")

    arun(main)


def test_zero_window_that_never_opens_times_out(arun, h2_server, tls_ca):
    async def handler(peer, request):
        await request.complete.wait()   # never: the client cannot send its body

    server = h2_server(handler, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            exc = await expect_error(client, perf, server.url("/upload"), restiming.ReadTimeout, "timeout",
                                     method="POST", body=b"b" * 1000, timeout=quick(read=0.3, write=2.0))
            assert "no response bytes" in str(exc)

    arun(main)


def _flooder(total_mib: int):
    from hyperframe.frame import DataFrame

    async def handler(peer, request):
        await peer.send_headers(request.stream_id, 200)
        frame = DataFrame(request.stream_id)
        frame.data = b"f" * 16384
        chunk = frame.serialize() * 64          # 1 MiB per write, ignoring the window
        for _ in range(total_mib):
            if peer.closed:
                return
            peer.raw(chunk)
            await peer.writer.drain()

    return handler


def test_data_flood_beyond_the_window_is_a_protocol_error_with_bounded_memory(arun, h2_server, tls_ca):
    """A streamed body nobody reads: the window closes at STREAM_WINDOW; a server that
    sends on regardless is a FLOW_CONTROL_ERROR, with memory bounded meanwhile."""
    server = h2_server(_flooder(64))

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            tracemalloc.start()
            try:
                async with client.stream(server.url("/flood")) as response:
                    await asyncio.sleep(0.3)     # not reading: the flood hits the window
                    with pytest.raises(restiming.ProtocolError) as info:
                        await response.aread()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert "FLOW_CONTROL" in repr(info.value.__cause__) or "flow" in str(info.value).lower()
            assert info.value.entry.error == "protocol"
        assert peak < 3 * STREAM_WINDOW + (4 << 20), f"peak {peak} bytes"

    arun(main)


def test_data_flood_into_fetch_stops_at_max_body_bytes(arun, h2_server, tls_ca):
    server = h2_server(_flooder(64))

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_body_bytes=2 << 20)
        async with h2_client(perf, tls_ca, limits=limits) as client:
            tracemalloc.start()
            try:
                await expect_error(client, perf, server.url("/flood"), restiming.LimitExceeded, "limit")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert peak < 12 << 20, f"peak {peak} bytes"

    arun(main)


def test_streamed_body_buffers_at_most_the_stream_window(arun, h2_server, tls_ca):
    total = 8 * STREAM_WINDOW

    async def handler(peer, request):
        await peer.respond(request.stream_id, 200, b"z" * total)

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            async with client.stream(server.url("/big")) as response:
                body = response._body
                got = 0
                peak = 0
                async for chunk in response.aiter_bytes():
                    got += len(chunk)
                    await asyncio.sleep(0.001)   # a slow consumer
                    peak = max(peak, body.conn.buffered)
        assert got == total and response.entry.encoded_body_size == total
        assert peak <= STREAM_WINDOW

    arun(main)


def test_pool_waits_for_a_free_stream(arun, h2_server, tls_ca):
    """MAX_CONCURRENT_STREAMS=1 and one connection allowed: the second fetch waits for
    the first stream to end; the wait shows before requestStart (SPEC §3)."""
    async def handler(peer, request):
        await asyncio.sleep(0.1)
        await peer.respond(request.stream_id, 200, b"slow")

    server = h2_server(handler, settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_connections_per_origin=1)
        async with h2_client(perf, tls_ca, limits=limits) as client:
            await client.fetch(server.url("/warm"))   # learn the server's SETTINGS
            a, b = await asyncio.gather(client.fetch(server.url("/a")), client.fetch(server.url("/b")))
            assert client.open_connections == 1
        first, second = sorted((a.entry, b.entry), key=lambda e: e.request_start)
        assert second.request_start >= first.response_end
        assert second.request_start - second.fetch_start >= 80
        assert_reused(second, tls=True)
        assert server.connections == 1

    arun(main)


def test_second_connection_only_when_the_first_is_full(arun, h2_server, tls_ca):
    async def handler(peer, request):
        await asyncio.sleep(0.05)
        await peer.respond(request.stream_id, 200, b"x")

    server = h2_server(handler, settings={SettingCodes.MAX_CONCURRENT_STREAMS: 2})

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            await client.fetch(server.url("/warm"))
            await asyncio.gather(*[client.fetch(server.url(f"/{i}")) for i in range(2)])
            assert client.open_connections == 1
            await asyncio.gather(*[client.fetch(server.url(f"/{i}")) for i in range(4)])
            assert client.open_connections == 2

    arun(main)


def test_cancelled_stream_leaves_the_connection_usable(arun, h2_server, tls_ca):
    async def handler(peer, request):
        if request.path == "/hang":
            await asyncio.sleep(10)
        await peer.respond(request.stream_id, 200, b"fine")

    server = h2_server(handler)

    async def main():
        perf = restiming.Performance()
        async with h2_client(perf, tls_ca) as client:
            task = asyncio.ensure_future(client.fetch(server.url("/hang")))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert perf.get_entries()[-1].error == "cancelled"
            r = await assert_usable(client, server.url("/ok"), b"fine")
            assert r.entry.connection_reused
        assert server.connections == 1

    arun(main)
