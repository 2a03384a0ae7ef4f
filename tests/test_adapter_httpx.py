"""The httpx transport (``restiming.adapters.httpx``) against nginx and the scripted
server: httpx's own behaviours (streaming, redirects, timeouts, errors, uploads) hold
through it, and its entries match the native engine's phase by phase."""

from __future__ import annotations

import asyncio

import pytest

import restiming
from restiming.phases import phase_durations
from tests.engine_checks import assert_fresh, assert_opaque, assert_reused
from tests.peers.scripted import Close, Drain, Reset, Send, Sleep, response, timed_response

httpx = pytest.importorskip("httpx")
from restiming.adapters.httpx import AsyncTransport, map_error  # noqa: E402

TIMEOUT = httpx.Timeout(3.0)


def make(perf, **options):
    return httpx.AsyncClient(transport=AsyncTransport(perf, **options), timeout=TIMEOUT)


def entry_of(r):
    e = r.extensions["resource_timing"]
    assert isinstance(e, restiming.PerformanceResourceTiming)
    return e


# -------------------------------------------------------------------- success, nginx
@pytest.mark.nginx
def test_get_keepalive_and_gzip_against_nginx(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            first = await client.get(nginx.url("/small.txt"))
            second = await client.get(nginx.url("/text.html"))
        assert first.status_code == 200 and first.content == nginx.files["small.txt"]
        assert first.http_version == "HTTP/1.1" and first.reason_phrase == "OK"
        # gzip is decoded once, by the engine; httpx sees an identity body
        assert second.text.encode() == nginx.files["text.html"]
        assert "content-encoding" not in second.headers
        a, b = entry_of(first), entry_of(second)
        assert_fresh(a, tls=False)
        assert_reused(b, tls=False)
        assert b.content_encoding == "gzip" and b.decoded_body_size == len(nginx.files["text.html"])
        assert b.encoded_body_size < b.decoded_body_size
        assert perf.get_entries() == [a, b]

    arun(main)


@pytest.mark.nginx
def test_redirects_are_httpx_s_one_entry_per_hop(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            r = await client.get(nginx.url("/redirect/3"), follow_redirects=True)
            assert r.text == "redirect done\n" and len(r.history) == 3
        async with httpx.AsyncClient(transport=AsyncTransport(perf), max_redirects=2) as client:
            with pytest.raises(httpx.TooManyRedirects):
                await client.get(nginx.url("/redirect/5"), follow_redirects=True)
        entries = perf.get_entries()[:4]
        assert [e.response_status for e in entries] == [302, 302, 302, 200]
        assert [e.name for e in entries] == [nginx.url(f"/redirect/{n}") for n in (3, 2, 1, 0)]
        for e in entries:  # restiming's own redirect following is off in the transport
            assert e.redirect_start == e.redirect_end == 0
        assert entry_of(r) is not None and entry_of(r).name == nginx.url("/redirect/0")
        assert entry_of(r.history[0]).name == nginx.url("/redirect/3")

    arun(main)


@pytest.mark.nginx
def test_tls_and_bad_certificate(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with make(perf, verify=tls_ca.ca_file) as client:
            r = await client.get(nginx.url("/small.txt", https=True))
            assert r.content == nginx.files["small.txt"]
            assert_fresh(entry_of(r), tls=True)
        async with make(perf) as client:  # system trust store: the test CA is unknown
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(nginx.url("/small.txt", https=True))
        cause = info.value.__cause__
        assert isinstance(cause, restiming.TLSError)
        assert_opaque(cause.entry, error="tls")

    arun(main)


# ------------------------------------------------------------ httpx client behaviours
def test_streaming_records_the_entry_when_the_body_ends(arun, scripted_server):
    body = b"x" * 50_000
    server = scripted_server([Send(response(200, body=body, chunked=True, chunk_size=4096))])

    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            async with client.stream("GET", server.url("/")) as r:
                assert r.extensions["resource_timing"] is None
                got = b"".join([c async for c in r.aiter_bytes()])
                e = entry_of(r)
            assert got == body and e.encoded_body_size == len(body)
            # closed before the body ends: recorded at close, no error
            async with client.stream("GET", server.url("/")) as r:
                pass
            assert entry_of(r).error is None and entry_of(r).response_status == 200
        assert len(perf.get_entries()) == 2

    arun(main)


def test_post_bytes_and_streamed_upload(arun, scripted_server):
    server = scripted_server(lambda req: [Send(response(200, body=req.body[::-1]))])

    async def upload():
        for part in (b"abc", b"def"):
            yield part

    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            r1 = await client.post(server.url("/"), content=b"hello")
            r2 = await client.post(server.url("/"), content=upload())
        assert r1.content == b"olleh" and r2.content == b"fedcba"
        sent = server.requests[1]
        assert sent.header("content-length") == b"6" and sent.header("transfer-encoding") is None
        assert entry_of(r2).bytes_sent > 6

    arun(main)


def test_read_timeout_and_connect_timeout(arun, scripted_server):
    server = scripted_server([Drain()])

    class SlowResolver:
        async def resolve(self, host, port):
            await asyncio.sleep(5)

    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            with pytest.raises(httpx.ReadTimeout) as info:
                await client.get(server.url("/"), timeout=httpx.Timeout(3.0, read=0.2))
            assert_opaque(info.value.__cause__.entry, error="timeout")
        async with make(perf, resolver=SlowResolver()) as client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("http://example.invalid/", timeout=httpx.Timeout(3.0, connect=0.2))
        assert [e.error for e in perf.get_entries()] == ["timeout", "timeout"]

    arun(main)


def test_refused_connection_and_server_hang_up(arun, scripted_server, free_port):
    hang_up = scripted_server([Close()])
    reset = scripted_server([Sleep(0.01), Reset()])

    async def main():
        perf = restiming.Performance()
        async with make(perf) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"http://127.0.0.1:{free_port()}/")
            assert_opaque(info.value.__cause__.entry, error="connect")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(hang_up.url("/"))
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await client.get(reset.url("/"))
            with pytest.raises(httpx.UnsupportedProtocol):
                await client.get("ftp://127.0.0.1/")
        assert [e.error for e in perf.get_entries()] == ["connect", "reset", "reset"]

    arun(main)


def test_every_restiming_error_maps_to_an_httpx_error():
    request = httpx.Request("GET", "http://x/")
    cases = {
        restiming.ConnectTimeout: httpx.ConnectTimeout, restiming.ReadTimeout: httpx.ReadTimeout,
        restiming.WriteTimeout: httpx.WriteTimeout, restiming.PoolTimeout: httpx.PoolTimeout,
        restiming.TotalTimeout: httpx.TimeoutException, restiming.DNSError: httpx.ConnectError,
        restiming.ConnectError: httpx.ConnectError, restiming.TLSError: httpx.ConnectError,
        restiming.ProtocolError: httpx.RemoteProtocolError, restiming.ConnectionReset: httpx.RemoteProtocolError,
        restiming.HeaderTooLarge: httpx.RemoteProtocolError, restiming.DecompressionLimit: httpx.DecodingError,
        restiming.TooManyRedirects: httpx.TransportError, restiming.InvalidURL: httpx.UnsupportedProtocol,
        restiming.InvalidHeader: httpx.LocalProtocolError,
    }
    for ours, theirs in cases.items():
        mapped = map_error(ours("boom"), request)
        assert type(mapped) is theirs and str(mapped) == "boom" and mapped.request is request
    reset = restiming.ConnectionReset("reset")
    reset.__cause__ = ConnectionResetError()
    assert type(map_error(reset)) is httpx.ReadError
    assert isinstance(map_error(KeyError("x")), KeyError)


def test_transport_refuses_its_own_redirect_following():
    with pytest.raises(TypeError):
        AsyncTransport(follow_redirects=True)


# ---------------------------------------------------------- same entries as native
def _shape(e):
    """Which stamps are set, the sizes and the protocol: what must be identical."""
    stamps = ("domain_lookup_start", "connect_start", "secure_connection_start", "request_start",
              "response_start", "response_end", "redirect_start")
    return ({s: bool(getattr(e, s)) for s in stamps}, e.encoded_body_size, e.decoded_body_size,
            e.transfer_size, e.response_status, e.next_hop_protocol, e.connection_reused, e.content_type)


def test_entries_match_native_phase_by_phase(arun, scripted_server):
    """Same server, same delays (100 ms to the head, 60 ms inside the body): the
    transport's entries have the native shape and per-phase durations within noise."""
    body = b"b" * 20_000
    server = scripted_server(timed_response(200, [("content-type", "text/plain")], body,
                                            head_delay=0.1, body_delay=0.06))

    async def main():
        native_perf, adapter_perf = restiming.Performance(), restiming.Performance()
        async with restiming.Client(native_perf, timeout=3.0) as client:
            native = [(await client.fetch(server.url("/"))).entry for _ in range(2)]
        async with make(adapter_perf) as client:
            adapted = [entry_of(await client.get(server.url("/"))) for _ in range(2)]
        return native, adapted

    native, adapted = arun(main)
    for n, a in zip(native, adapted):
        assert _shape(n) == _shape(a)
        dn, da = phase_durations(n), phase_durations(a)
        for phase in ("wait", "receive"):
            assert da[phase] == pytest.approx(dn[phase], abs=15.0), phase
        for phase in ("dns", "connect", "request"):
            assert (dn[phase] is None) == (da[phase] is None)
            if dn[phase] is not None:
                assert abs(da[phase] - dn[phase]) < 15.0, phase
        assert 95 <= da["wait"] <= 150 and 55 <= da["receive"] <= 120
