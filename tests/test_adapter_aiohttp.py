"""The aiohttp trace config (``restiming.adapters.aiohttp``) against nginx and the
scripted server: one entry per request, redirects folded, network errors typed, the
fields aiohttp cannot observe left 0, and wait/receive agreeing with the native engine
against a server with known delays."""

from __future__ import annotations

import socket

import pytest

import restiming
from restiming.phases import phase_durations
from tests.engine_checks import assert_opaque, assert_order
from tests.peers.scripted import Drain, Send, Sleep, response, timed_response

aiohttp = pytest.importorskip("aiohttp")
from restiming.adapters.aiohttp import error_kind, trace_config  # noqa: E402

TIMEOUT = aiohttp.ClientTimeout(total=5)


def session(perf, **kwargs):
    kwargs.setdefault("timeout", TIMEOUT)
    return aiohttp.ClientSession(trace_configs=[trace_config(perf, origin=kwargs.pop("origin", None))], **kwargs)


def not_observable(e):
    """Fields aiohttp has no signal for stay 0 (module docstring, field by field)."""
    assert e.request_end == 0 and e.first_interim_response_start == 0
    assert e.bytes_sent == 0 and e.bytes_received == 0


@pytest.mark.nginx
def test_fresh_then_reused_connection(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with session(perf) as s:
            for path in ("/plain/small.txt", "/large.bin"):
                async with s.get(nginx.url(path)) as r:
                    assert await r.read() == nginx.files[path.rsplit("/", 1)[1]]
        return perf.get_entries()

    fresh, reused = arun(main)
    for e in (fresh, reused):
        assert_order(e)
        not_observable(e)
        assert e.response_status == 200 and e.next_hop_protocol == "http/1.1" and e.error is None
    assert fresh.connection_reused is False and reused.connection_reused is True
    assert fresh.domain_lookup_start == fresh.domain_lookup_end == fresh.connect_start  # IP literal
    assert fresh.connect_end > fresh.connect_start and fresh.secure_connection_start == 0
    f = reused.fetch_start
    assert reused.domain_lookup_start == reused.connect_start == reused.connect_end == f
    assert reused.request_start >= f and reused.response_start >= reused.request_start
    assert reused.encoded_body_size == reused.decoded_body_size == len(nginx.files["large.bin"])
    assert reused.content_type == "application/octet-stream"
    assert reused.remote_address.startswith("127.0.0.1:")


@pytest.mark.nginx
def test_redirects_fold_into_one_entry(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with session(perf) as s:
            async with s.get(nginx.url("/redirect/3")) as r:
                assert await r.text() == "redirect done\n"
            with pytest.raises(aiohttp.TooManyRedirects):
                async with s.get(nginx.url("/redirect/5"), max_redirects=2):
                    pass
        return perf.get_entries()

    entry, failed = arun(main)
    assert entry.name == nginx.url("/redirect/3")
    assert entry.redirect_start == entry.start_time and entry.redirect_end > entry.redirect_start
    assert entry.fetch_start >= entry.redirect_end and entry.response_status == 200
    assert_order(entry)
    assert_opaque(failed, error="too_many_redirects")


@pytest.mark.nginx
def test_dns_lookup_and_timing_allow_origin(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with session(perf, origin=nginx.origin) as s:
            for url in (nginx.url("/plain/small.txt", host="localhost"),  # cross-origin, no TAO
                        nginx.url("/tao/star", host="localhost")):
                async with s.get(url) as r:
                    await r.read()
        return perf.get_entries()

    opaque, allowed = arun(main)
    assert_opaque(opaque, status=200)
    assert allowed.domain_lookup_end >= allowed.domain_lookup_start > 0 and allowed.request_start > 0


@pytest.mark.nginx
def test_tls_and_bad_certificate(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with session(perf) as s:
            async with s.get(nginx.url("/large.bin", https=True), ssl=tls_ca.client_context()) as r:
                await r.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with s.get(nginx.url("/small.txt", https=True)):
                    pass
        return perf.get_entries()

    ok, bad = arun(main)
    assert_order(ok)
    assert ok.secure_connection_start == 0  # no TLS-start signal in aiohttp
    assert ok.tls_version.startswith("TLSv1")
    assert_opaque(bad, error="tls")


def test_network_errors(arun, scripted_server, free_port):
    stalled = scripted_server([Drain()])

    class FailingResolver(aiohttp.abc.AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            raise OSError(socket.EAI_NONAME, "Name or service not known")

        async def close(self):
            pass

    async def main():
        perf = restiming.Performance()
        async with session(perf) as s:
            with pytest.raises(aiohttp.ClientConnectorError):
                await s.get(f"http://127.0.0.1:{free_port()}/")
            with pytest.raises(TimeoutError):
                await s.get(stalled.url("/"), timeout=aiohttp.ClientTimeout(sock_read=0.2))
        async with session(perf, connector=aiohttp.TCPConnector(resolver=FailingResolver())) as s:
            with pytest.raises(aiohttp.ClientConnectorDNSError):
                await s.get("http://example.invalid/")
        return perf.get_entries()

    refused, timeout, dns = arun(main)
    assert_opaque(refused, error="connect")
    assert_opaque(timeout, error="timeout")
    assert 150 <= timeout.duration < 1500
    assert_opaque(dns, error="dns")


def test_raise_for_status_is_a_response_not_an_error(arun, scripted_server):
    server = scripted_server([Send(response(404, body=b"nope"))])

    async def main():
        perf = restiming.Performance()
        async with session(perf, raise_for_status=True) as s:
            with pytest.raises(aiohttp.ClientResponseError):
                await s.get(server.url("/"))
        return perf.get_entries()

    (entry,) = arun(main)
    assert entry.error is None and entry.response_status == 404 and entry.response_start > 0


def test_streamed_body_and_early_release(arun, scripted_server):
    body = b"z" * 300_000
    server = scripted_server([Send(response(200, body=body[:1000], content_length=len(body))), Sleep(0.05),
                              Send(body[1000:])])

    async def main():
        perf = restiming.Performance()
        async with session(perf) as s:
            async with s.get(server.url("/")) as r:
                got = b"".join([c async for c in r.content.iter_chunked(65536)])
            assert got == body
            async with s.get(server.url("/")) as r:  # released before its body ends
                await r.content.read(10)
        return perf.get_entries()

    full, early = arun(main)
    assert full.decoded_body_size == len(body) and full.response_end - full.response_start >= 40
    assert early.error is None and early.response_status == 200
    assert early.decoded_body_size < len(body)


def test_wait_and_receive_agree_with_the_native_engine(arun, scripted_server):
    """Known delays: 120 ms before the head, 80 ms inside the body. aiohttp and the
    engine see the same wait and receive within a few milliseconds."""
    body = b"d" * 10_000
    server = scripted_server(timed_response(200, [("content-type", "text/plain")], body,
                                            head_delay=0.12, body_delay=0.08))

    async def main():
        native_perf, trace_perf = restiming.Performance(), restiming.Performance()
        async with restiming.Client(native_perf, timeout=5.0) as client:
            native = [(await client.fetch(server.url("/"))).entry for _ in range(3)]
        async with session(trace_perf) as s:
            traced = []
            for _ in range(3):
                async with s.get(server.url("/")) as r:
                    await r.read()
            traced = trace_perf.get_entries()
        return native, traced

    native, traced = arun(main)
    for n, t in zip(native, traced):
        dn, dt = phase_durations(n), phase_durations(t)
        assert dt["wait"] == pytest.approx(dn["wait"], abs=5.0)
        assert dt["receive"] == pytest.approx(dn["receive"], abs=5.0)
        assert 115 <= dt["wait"] <= 170 and 75 <= dt["receive"] <= 130
        assert t.decoded_body_size == n.decoded_body_size == len(body)


@pytest.mark.parametrize("exc, kind", [
    (aiohttp.ServerDisconnectedError(), "reset"),
    (aiohttp.ClientPayloadError("bad"), "protocol"),
    (aiohttp.ConnectionTimeoutError(), "timeout"),
    (aiohttp.SocketTimeoutError(), "timeout"),
    (ConnectionResetError(), "reset"),
    (ValueError("odd"), "protocol"),
])
def test_error_kinds(exc, kind):
    assert error_kind(exc) == kind
