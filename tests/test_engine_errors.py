"""Bad input and hostile peers (SPEC.md §4): every failure is a typed error, records one
opaque entry with its ``error`` kind (or none at all for a request that never started),
and leaves the same client able to fetch again. Deadlines, cancellation and close()
are in test_engine_timeouts.py.

Hostile peers are ScriptedServer scripts, one route per case next to a good ``/ok``.
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

import restiming
from tests.engine_checks import assert_opaque, assert_usable, expect_error, make_client, routes
from tests.engine_support import open_fds
from tests.peers.scripted import Close, Reset, Send, Sleep, Trickle, response

MiB = 1 << 20
HEAD_1000 = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


# -- requests refused before any socket -----------------------------------------------------

@pytest.mark.parametrize("url", [
    "", "not a url", "/relative/path", "http://", "http:///path", "http://exa mple.com/",
    "http://[::1/", "http://host:99999/", "http://host:port/", "http://user:pw@host/",
    "http://a\nb/", "http://bad\x00host/", "ftp://example.com/", "file:///etc/passwd",
    "ws://example.com/", "mailto:someone@example.com", "javascript:alert(1)",
])
def test_invalid_urls_raise_before_anything(arun, scripted_server, url):
    server = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            fds = open_fds()
            with pytest.raises(restiming.InvalidURL) as info:
                await client.fetch(url)
            assert isinstance(info.value, ValueError)
            assert open_fds() == fds  # no socket was made
            assert perf.get_entries() == [] and client.open_connections == 0
            with pytest.raises(restiming.InvalidURL):
                async with client.stream(url):
                    pass
            assert perf.get_entries() == []
            await assert_usable(client, server.url("/ok"), b"fine")
        assert server.connections == 1

    arun(main)


@pytest.mark.parametrize("headers", [
    {"X-A": "a\r\nInjected: yes"}, {"X-A": "a\nb"}, {"X-A": "a\rb"}, {"X-A": "a\x00b"},
    {"X\r\nA": "v"}, {"X A": "v"}, {"": "v"}, {"X-A\x00": "v"}, [("X-A", b"a\r\n\r\nGET / HTTP/1.1")],
    {"X-A": "\u20ac"}, [("only-a-name",)],
])
def test_invalid_request_headers_raise_before_anything(arun, scripted_server, headers):
    server = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            with pytest.raises(restiming.InvalidHeader) as info:
                await client.fetch(server.url("/ok"), headers=headers)
            assert isinstance(info.value, ValueError)
            assert perf.get_entries() == []
            await assert_usable(client, server.url("/ok"))
        assert server.connections == 1 and len(server.requests) == 1

    arun(main)


@pytest.mark.parametrize("kwargs, error", [
    ({"method": "GE T"}, ValueError), ({"method": "GET\r\n"}, ValueError), ({"method": ""}, ValueError),
    ({"body": 12}, TypeError), ({"body": object()}, TypeError), ({"timeout": -1}, ValueError),
    ({"timeout": "5"}, TypeError),
])
def test_invalid_arguments_raise_before_anything(arun, scripted_server, kwargs, error):
    server = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            with pytest.raises(error):
                await client.fetch(server.url("/ok"), **kwargs)
            assert perf.get_entries() == []
            await assert_usable(client, server.url("/ok"))

    arun(main)


# -- malformed and broken responses ---------------------------------------------------------

MALFORMED = {
    "garbage-status-line": ([Send(b"garbage\r\n\r\n"), Close()], restiming.ProtocolError),
    "status-code-letters": ([Send(b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n")], restiming.ProtocolError),
    "bad-version": ([Send(b"HTTP/9 200 OK\r\ncontent-length: 0\r\n\r\n")], restiming.ProtocolError),
    "header-without-colon": ([Send(b"HTTP/1.1 200 OK\r\nbad header\r\ncontent-length: 0\r\n\r\n")],
                             restiming.ProtocolError),
    "space-before-colon": ([Send(b"HTTP/1.1 200 OK\r\nX-A : b\r\ncontent-length: 0\r\n\r\n")],
                           restiming.ProtocolError),
    "conflicting-lengths": ([Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello")],
                            restiming.ProtocolError),
    "negative-length": ([Send(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n")], restiming.ProtocolError),
    "bad-chunk-size": ([Send(CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n")], restiming.ProtocolError),
    "chunk-without-crlf": ([Send(CHUNKED + b"5\r\nhelloXX0\r\n\r\n")], restiming.ProtocolError),
    "short-chunked-body": ([Send(CHUNKED + b"5\r\nhello\r\n"), Close()], restiming.ProtocolError),
    "short-body": ([Send(HEAD_1000 + b"only a little"), Close()], restiming.ProtocolError),
    "close-mid-headers": ([Send(b"HTTP/1.1 200 OK\r\nContent-"), Close()], restiming.ProtocolError),
    "bad-gzip": ([Send(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 9\r\n\r\nnot gzip!")],
                 restiming.ProtocolError),
    "truncated-gzip": ([Send(response(200, body=b"x" * 5000, gzip=True)[:-20]), Close()],
                       restiming.ProtocolError),
    "unsolicited-101": ([Send(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"), Close()],
                        restiming.ProtocolError),
    "close-before-response": ([Close()], restiming.ConnectionReset),
    "reset-before-response": ([Reset()], restiming.ConnectionReset),
    "reset-mid-headers": ([Send(b"HTTP/1.1 200 OK\r\nContent-"), Sleep(0.05), Reset()], restiming.ConnectionReset),
    "reset-mid-body": ([Send(HEAD_1000 + b"x" * 100), Sleep(0.05), Reset()], restiming.ConnectionReset),
    "reset-mid-chunked": ([Send(CHUNKED + b"5\r\nhello\r\n"), Sleep(0.05), Reset()], restiming.ConnectionReset),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_broken_responses(arun, scripted_server, case):
    actions, exc_type = MALFORMED[case]
    server = scripted_server(routes(bad=actions))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            exc = await expect_error(client, perf, server.url("/bad"), exc_type, exc_type.kind)
            assert exc.__cause__ is None or not isinstance(exc.__cause__, restiming.RestimingError)
            assert client.open_connections == 0  # a broken connection is never pooled
            await assert_usable(client, server.url("/ok"), b"fine")
        assert server.requests[-1].connection_index == 1

    arun(main)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_reset_on_reused_connection_mid_body(arun, scripted_server, tls_ca, tls):
    def handler(request):
        if request.request_index_on_connection == 1:
            return [Send(HEAD_1000 + b"x" * 10), Sleep(0.05), Reset()]
        return [Send(response(200, body=b"fine"))]

    server = scripted_server(handler, tls=tls_ca.server_context() if tls else None)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            await assert_usable(client, server.url("/"))
            # a response byte arrived: no retry, even for a GET
            await expect_error(client, perf, server.url("/"), restiming.ConnectionReset, "reset")
            await assert_usable(client, server.url("/"))
        assert len(server.requests) == 3

    arun(main)


# -- limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["one-200k-header", "many-headers", "trickled-headers", "huge-interim"])
def test_oversized_response_head(arun, scripted_server, case):
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\ncontent-length: 0\r\n\r\n"
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000)) + b"\r\n"
    actions = {"one-200k-header": [Send(big)],
               "many-headers": [Send(many)],
               "trickled-headers": [Trickle(many, 0.0, chunk=8192)],
               "huge-interim": [Send(b"HTTP/1.1 103 Early Hints\r\nLink: " + b"l" * (200 * 1024) + b"\r\n\r\n"),
                                Send(response(200))]}[case]
    server = scripted_server(routes(big=actions))

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_header_bytes=65536)
        async with make_client(perf, limits=limits) as client:
            exc = await expect_error(client, perf, server.url("/big"), restiming.HeaderTooLarge, "limit")
            assert isinstance(exc, restiming.LimitExceeded)
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_head_just_under_the_limit_passes(arun, scripted_server):
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60000 + b"\r\ncontent-length: 2\r\n\r\nok"
    server = scripted_server(routes(big=[Send(head)]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, limits=restiming.Limits(max_header_bytes=65536)) as client:
            response_ = await client.fetch(server.url("/big"))
        assert response_.body == b"ok" and len(response_.headers["x-big"]) == 60000

    arun(main)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed (about 1 MiB), made by streaming compression."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(1024)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("mode", ["fetch", "stream"])
def test_gzip_bomb_is_stopped_without_a_large_allocation(arun, scripted_server, gzip_bomb, mode):
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(gzip_bomb)
    server = scripted_server(routes(bomb=[Send(head + gzip_bomb)]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            tracemalloc.start()
            try:
                if mode == "fetch":
                    exc = await expect_error(client, perf, server.url("/bomb"), restiming.DecompressionLimit,
                                             "limit")
                else:
                    with pytest.raises(restiming.DecompressionLimit) as info:
                        async with client.stream(server.url("/bomb")) as response_:
                            async for _chunk in response_.aiter_bytes():
                                pass
                    exc = info.value
                    assert_opaque(exc.entry, error="limit")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert isinstance(exc, restiming.LimitExceeded)
            assert peak < 16 * MiB, f"peak allocation {peak / MiB:.1f} MiB"
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_decompression_limit_option(arun, scripted_server):
    body = bytes(3 * MiB)
    server = scripted_server(routes(z=[Send(response(200, body=body, gzip=True))]))

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_decompressed_bytes=2 * MiB, max_decompression_ratio=0)
        async with make_client(perf, limits=limits) as client:
            await expect_error(client, perf, server.url("/z"), restiming.DecompressionLimit, "limit")
        async with make_client(perf, limits=restiming.Limits(max_decompression_ratio=0)) as client:
            assert (await client.fetch(server.url("/z"))).body == body

    arun(main)


def test_max_body_bytes(arun, scripted_server):
    server = scripted_server(routes(big=[Send(response(200, body=b"b" * 5000))]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, limits=restiming.Limits(max_body_bytes=4096)) as client:
            await expect_error(client, perf, server.url("/big"), restiming.LimitExceeded, "limit")
            async with client.stream(server.url("/big")) as streamed:  # stream() has no such limit
                assert len(await streamed.aread()) == 5000
            await assert_usable(client, server.url("/ok"))

    arun(main)


# -- redirects gone wrong -------------------------------------------------------------------

@pytest.mark.parametrize("loop", ["self", "pair"])
def test_redirect_loop(arun, scripted_server, loop):
    target = {"self": "/a", "pair": "/b"}[loop]
    server = scripted_server(routes(a=[Send(response(302, [("location", target)]))],
                                    b=[Send(response(307, [("location", "/a")]))]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await expect_error(client, perf, server.url("/a"), restiming.TooManyRedirects, "too_many_redirects")
            assert len(server.requests) == 21
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_redirect_to_invalid_location(arun, scripted_server):
    server = scripted_server(routes(a=[Send(response(302, [("location", "http://exa mple.com/")]))]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await expect_error(client, perf, server.url("/a"), restiming.ProtocolError, "protocol")
            await assert_usable(client, server.url("/ok"))

    arun(main)


# -- connections and TLS --------------------------------------------------------------------

def test_refused_connection(arun, scripted_server, free_port):
    server = scripted_server(routes())
    port = free_port()

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            exc = await expect_error(client, perf, f"http://127.0.0.1:{port}/", restiming.ConnectError, "connect")
            assert not isinstance(exc, OSError)
            assert client.open_connections == 0
            await assert_usable(client, server.url("/ok"))

    arun(main)


@pytest.mark.parametrize("case", ["untrusted-ca", "hostname-mismatch"])
def test_tls_verification_failures(arun, scripted_server, tls_ca, case):
    if case == "untrusted-ca":
        tls_server = scripted_server(routes(), tls=tls_ca.server_context())
        verify = True  # the system store does not know the test CA
    else:
        tls_server = scripted_server(routes(), tls=tls_ca.server_context(("wrong.test",)))
        verify = tls_ca.ca_file
    plain = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=verify) as client:
            exc = await expect_error(client, perf, tls_server.url("/ok"), restiming.TLSError, "tls")
            assert "certificate" in str(exc).lower() or "hostname" in str(exc).lower()
            assert client.open_connections == 0
            await assert_usable(client, plain.url("/ok"))
        assert tls_server.requests == []

    arun(main)


@pytest.mark.parametrize("verify", ["false", "context", "ca-file"])
def test_tls_verify_options(arun, scripted_server, tls_ca, verify):
    hostnames = ("wrong.test",) if verify == "false" else ("127.0.0.1",)
    server = scripted_server(routes(), tls=tls_ca.server_context(hostnames))
    value = {"false": False, "context": tls_ca.client_context(), "ca-file": tls_ca.ca_file}[verify]

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=value) as client:
            response_ = await client.fetch(server.url("/ok"))
        assert response_.body == b"fine" and response_.entry.tls_version.startswith("TLSv1")

    arun(main)


@pytest.mark.parametrize("tls, end, exc_types", [
    # An RST can beat the loop's check of the connect: then it is a failed connect.
    (False, Reset(), (restiming.ConnectionReset, restiming.ConnectError)),
    (False, Close(), (restiming.ConnectionReset,)),
    (True, Reset(), (restiming.TLSError, restiming.ConnectError)),
    (True, Close(), (restiming.TLSError,)),
    (True, Send(b"HTTP/1.1 200 OK\r\n\r\n"), (restiming.TLSError,)),
], ids=["http-reset", "http-close", "tls-reset", "tls-close", "tls-garbage"])
def test_peer_hangs_up_right_after_accept(arun, scripted_server, tls_ca, tls, end, exc_types):
    actions = [end] if not isinstance(end, Send) else [end, Close()]
    server = scripted_server(routes(), tls=tls_ca.server_context() if tls else None,
                             on_connect=lambda index: actions if index == 0 else [])

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            with pytest.raises(exc_types) as info:
                await client.fetch(server.url("/ok"))
            assert_opaque(info.value.entry, error=info.value.kind)
            assert perf.get_entries() == [info.value.entry]
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_protocol_mismatches(arun, scripted_server, tls_ca):
    tls_server = scripted_server(routes(), tls=tls_ca.server_context())
    plain = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            # https to a plain-HTTP port: the server answers the ClientHello with a 400
            await expect_error(client, perf, plain.url("/ok").replace("http:", "https:"), restiming.TLSError, "tls")
            # plain HTTP to a TLS port: the handshake fails and the server hangs up
            with pytest.raises((restiming.ConnectionReset, restiming.ProtocolError)) as info:
                await client.fetch(tls_server.url("/ok").replace("https:", "http:"))
            assert_opaque(info.value.entry, error=info.value.kind)
            await assert_usable(client, plain.url("/ok"))
            await assert_usable(client, tls_server.url("/ok"))

    arun(main)

