"""The engine's entries against SPEC.md §3: stamp order and equalities on fresh, reused
and TLS connections, interim responses, sizes, Server-Timing, content type, the
extensions, and streaming. The pool, retries and DNS are in test_engine_pool.py.

Every test runs on asyncio and on uvloop (``arun``), against a ScriptedServer on
127.0.0.1, and fails on a leaked task, file descriptor or loop exception.
"""

from __future__ import annotations

import asyncio

import pytest

import restiming
from tests.engine_checks import (
    TRANSFER_SIZE_OVERHEAD,
    assert_fresh,
    assert_order,
    assert_reused,
    assert_usable,
    make_client,
)
from tests.peers.scripted import Close, Send, Sleep, Trickle, interim, response

SERVER_TIMING = 'db;dur=53.2;desc="query", cache;desc=hit, miss'


def _ok(body: bytes = b"ok", headers=(("content-type", "text/plain"),)):
    return [Send(response(200, list(headers), body))]


# -- fresh and reused connections ---------------------------------------------------------

def test_fresh_http_entry(arun, scripted_server):
    body = b"x" * 1000
    server = scripted_server({"/page": _ok(body, [("content-type", "Text/HTML; charset=UTF-8"),
                                                  ("server-timing", SERVER_TIMING)])})
    url = server.url("/page?q=1#section-2")

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response = await client.fetch(url)
            entries = perf.get_entries()  # in the buffer right after fetch() returned
        assert response.status == 200 and response.body == body
        assert entries == [response.entry]
        e = response.entry
        assert_fresh(e, tls=False)
        assert e.name == url  # the fragment is kept
        assert e.initiator_type == "fetch"
        assert e.next_hop_protocol == "http/1.1"
        assert e.remote_address == f"127.0.0.1:{server.port}"
        assert e.response_status == 200 and e.error is None
        assert e.content_type == "text/html"  # the essence: lowercased, no parameters
        assert e.encoded_body_size == e.decoded_body_size == len(body)
        assert e.transfer_size == len(body) + TRANSFER_SIZE_OVERHEAD
        assert e.bytes_sent == len(server.requests[0].raw)
        assert e.bytes_received > len(body)
        assert e.connection_id > 0
        assert e.domain_lookup_start <= e.domain_lookup_end <= e.connect_start
        assert e.request_start <= e.request_end <= e.response_end
        timing = [(t.name, t.duration, t.description) for t in e.server_timing]
        assert timing == [("db", 53.2, "query"), ("cache", 0.0, "hit"), ("miss", 0.0, "")]
        json = e.to_json()
        assert json["name"] == url and json["responseStart"] == e.response_start
        assert "error" not in json and "connectionReused" not in json

    arun(main)


def test_fresh_tls_entry(arun, scripted_server, tls_ca):
    server = scripted_server(None, tls=tls_ca.server_context())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            response = await client.fetch(server.url("/"))
        e = response.entry
        assert response.body == b"ok"
        assert_fresh(e, tls=True)
        assert e.next_hop_protocol == "http/1.1"
        assert e.remote_address == f"127.0.0.1:{server.port}"
        assert e.tls_version in ("TLSv1.2", "TLSv1.3")
        # the handshake is inside connect: connectEnd follows it
        assert e.connect_start < e.secure_connection_start < e.connect_end

    arun(main)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_reused_connection_stamps(arun, scripted_server, tls_ca, tls):
    server = scripted_server(None, tls=tls_ca.server_context() if tls else None)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            first = (await client.fetch(server.url("/a"))).entry
            second = (await client.fetch(server.url("/b"))).entry
            third = (await client.fetch(server.url("/c"))).entry
            assert client.open_connections == 1
        assert_fresh(first, tls=tls)
        for e in (second, third):
            assert_reused(e, tls=tls)
            assert e.connection_id == first.connection_id
            assert e.fetch_start == e.start_time
            assert e.tls_version == first.tls_version
            assert e.remote_address == first.remote_address
        assert second.start_time >= first.response_end
        assert server.connections == 1
        assert [r.request_index_on_connection for r in server.requests] == [0, 1, 2]

    arun(main)


def test_http10_response_and_entry_extras(arun, scripted_server):
    server = scripted_server({"/": [Send(response(200, body=b"old", http_version="1.0",
                                                  content_length=False)), Close()]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            intended = restiming.clock.now_ns()
            response_ = await client.fetch(server.url("/"), initiator_type="xmlhttprequest",
                                           intended_start=intended)
            assert client.open_connections == 0  # HTTP/1.0 without keep-alive: closed
        e = response_.entry
        assert response_.body == b"old" and response_.http_version == "HTTP/1.0"
        assert e.next_hop_protocol == "http/1.0"
        assert e.initiator_type == "xmlhttprequest"
        assert 0 < e.intended_start <= e.start_time
        assert e.request_end >= e.request_start
        assert_fresh(e, tls=False)

    arun(main)


# -- interim responses --------------------------------------------------------------------

def test_103_sets_first_interim_response_start(arun, scripted_server):
    final = response(200, body=b"final")
    server = scripted_server({"/": [Send(interim(103, [("link", "</a.css>; rel=preload")])),
                                    Sleep(0.06), Send(final)]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/"))
        e = response_.entry
        assert response_.status == 200 and response_.body == b"final"
        assert_fresh(e, tls=False)
        assert 0 < e.first_interim_response_start < e.final_response_headers_start
        assert e.final_response_headers_start - e.first_interim_response_start >= 50
        assert e.response_start == e.first_interim_response_start

    arun(main)


def test_only_first_of_several_interims_counts(arun, scripted_server):
    server = scripted_server({"/": [Send(interim(103)), Sleep(0.03), Send(interim(103)), Sleep(0.03),
                                    Send(response(200, body=b"x"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            e = (await client.fetch(server.url("/"))).entry
        assert e.final_response_headers_start - e.first_interim_response_start >= 50

    arun(main)


def test_100_continue_is_not_an_interim_response(arun, scripted_server):
    server = scripted_server({"/": [Send(interim(100)), Sleep(0.03), Send(response(200, body=b"x"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            e = (await client.fetch(server.url("/"), method="POST", body=b"data")).entry
        assert e.first_interim_response_start == 0
        assert e.final_response_headers_start > e.request_start
        assert e.response_start == e.final_response_headers_start
        assert_order(e)

    arun(main)


def test_interim_and_final_in_one_segment(arun, scripted_server):
    server = scripted_server({"/": [Send(interim(103) + response(200, body=b"x"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            e = (await client.fetch(server.url("/"))).entry
        # both heads arrived in one chunk: the same arrival stamp
        assert e.first_interim_response_start == e.final_response_headers_start > 0

    arun(main)


# -- sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["identity", "gzip", "deflate", "chunked", "chunked-gzip", "close-delimited"])
def test_body_sizes(arun, scripted_server, kind):
    body = (b"restiming sizes the body " * 400)[:9000]
    options = {"gzip": "gzip" in kind, "deflate": kind == "deflate", "chunked": "chunked" in kind,
               "chunk_size": 1000}
    if kind == "close-delimited":
        options["content_length"] = False
    wire = response(200, [("content-type", "text/plain")], body, **options)
    actions = [Send(wire)] + ([Close()] if kind == "close-delimited" else [])
    server = scripted_server({"/": actions})
    head_size = wire.index(b"\r\n\r\n") + 4
    framed = wire[head_size:]

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/"))
        e = response_.entry
        assert response_.body == body
        assert e.decoded_body_size == len(body)
        if kind in ("gzip", "deflate", "chunked-gzip"):
            assert e.encoded_body_size < e.decoded_body_size
            assert e.content_encoding == ("deflate" if kind == "deflate" else "gzip")
        else:
            assert e.encoded_body_size == len(body)
            assert e.content_encoding == ""
        if "chunked" in kind:
            assert e.encoded_body_size < len(framed)  # chunk framing is not payload
        else:
            assert e.encoded_body_size == len(framed)
        assert e.transfer_size == e.encoded_body_size + TRANSFER_SIZE_OVERHEAD
        assert e.bytes_received == len(wire)
        assert e.bytes_sent > 0
        assert_fresh(e, tls=False)

    arun(main)


@pytest.mark.parametrize(("coding", "attribute"), [("br", "br"), ("zstd", "zstd"), ("gzip, gzip", "multiple"),
                                                    ("identity", "@unknown")])
def test_other_content_codings(arun, scripted_server, coding, attribute):
    """contentEncoding per SPEC §3 / Fetch: the coding when decoded, "multiple" for
    several, "@unknown" for anything else (identity included)."""
    body = b"other codings " * 3000
    if coding == "br":
        brotli = pytest.importorskip("brotli")
        payload = brotli.compress(body)
    elif coding == "zstd":
        zstandard = pytest.importorskip("zstandard")
        payload = zstandard.ZstdCompressor().compress(body)
    elif coding == "gzip, gzip":
        import gzip

        payload = gzip.compress(gzip.compress(body))
    else:
        payload = body
    server = scripted_server({"/": [Send(response(200, [("content-encoding", coding)], payload))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/"))
        e = response_.entry
        assert response_.body == body
        assert e.encoded_body_size == len(payload) and e.decoded_body_size == len(body)
        assert e.content_encoding == attribute
        accept = server.requests[0].header("accept-encoding").decode()
        assert "gzip" in accept and (coding not in ("br", "zstd") or coding in accept)

    arun(main)


def test_large_upload(arun, scripted_server):
    upload = bytes(range(256)) * (5 * 4096)  # 5 MiB
    server = scripted_server({"/up": [Send(response(201, body=b"stored"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/up"), method="PUT", body=upload)
        e = response_.entry
        assert response_.status == 201 and server.requests[0].body == upload
        assert e.bytes_sent > len(upload)
        assert e.request_start < e.request_end <= e.response_start <= e.response_end
        assert_fresh(e, tls=False)

    arun(main)


def test_empty_and_head_responses(arun, scripted_server):
    server = scripted_server({"/204": [Send(response(204))],
                              "/head": [Send(response(200, [("content-length", "12345")]))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            no_content = await client.fetch(server.url("/204"))
            head = await client.fetch(server.url("/head"), method="HEAD")
        for r in (no_content, head):
            assert r.body == b""
            assert r.entry.encoded_body_size == r.entry.decoded_body_size == 0
            assert r.entry.transfer_size == TRANSFER_SIZE_OVERHEAD
        assert no_content.entry.response_status == 204
        assert head.entry.connection_reused  # HEAD's declared length is not read
        assert server.requests[1].method == "HEAD"

    arun(main)


# -- streaming -------------------------------------------------------------------------------

def test_stream_delivers_chunks_and_records_at_end(arun, scripted_server):
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 3000\r\ncontent-type: application/octet-stream\r\n\r\n"
    server = scripted_server({"/": [Send(head + b"a" * 1000), Sleep(0.05), Send(b"b" * 1000), Sleep(0.05),
                                    Send(b"c" * 1000)]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            chunks = []
            async with client.stream(server.url("/")) as response_:
                assert response_.status == 200 and response_.entry is None
                async for chunk in response_.aiter_bytes():
                    chunks.append(chunk)
                    if len(b"".join(chunks)) < 3000:
                        assert perf.get_entries() == [] and response_.entry is None
                last = perf.now()
                e = response_.entry
                assert e is not None and perf.get_entries() == [e]
            again = (await client.fetch(server.url("/"))).entry
        assert b"".join(chunks) == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
        assert len(chunks) >= 3
        assert e.encoded_body_size == e.decoded_body_size == 3000
        assert e.response_end - e.response_start >= 90
        assert e.response_end <= last
        assert_fresh(e, tls=False)
        assert_reused(again, tls=False)  # a fully read stream gives its connection back

    arun(main)


@pytest.mark.parametrize("read_first", [True, False])
def test_stream_closed_early_records_entry(arun, scripted_server, read_first):
    body = b"z" * 20000
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
    server = scripted_server({"/big": [Send(head), Trickle(body, 0.02, chunk=500)]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            async with client.stream(server.url("/big")) as response_:
                if read_first:
                    async for chunk in response_.aiter_bytes():
                        assert chunk
                        break
                before_close = perf.now()
            after_close = perf.now()
            e = response_.entry
            assert e is not None and perf.get_entries() == [e]
            assert before_close <= e.response_end <= after_close
            assert e.error is None and e.response_status == 200
            assert client.open_connections == 0  # the unread rest made it unusable
            await assert_usable(client, server.url("/big"), body)

    arun(main)


def test_stream_aread_and_gzip(arun, scripted_server):
    body = b"stream me " * 5000
    server = scripted_server({"/": [Send(response(200, body=body, gzip=True, chunked=True, chunk_size=4096))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            async with client.stream(server.url("/")) as response_:
                data = await response_.aread()
        assert data == body
        assert response_.entry.decoded_body_size == len(body)
        assert response_.entry.encoded_body_size < len(body)

    arun(main)


# -- delivery -------------------------------------------------------------------------------

def test_entries_are_buffered_at_once_and_observed_later(arun, scripted_server):
    server = scripted_server({"/": _ok(), "/bad": [Close()]})

    async def main():
        perf = restiming.Performance()
        seen = []
        observer = restiming.PerformanceObserver(lambda entries, obs: seen.extend(entries.get_entries()),
                                                 performance=perf)
        observer.observe(type="resource")
        async with make_client(perf) as client:
            ok = await client.fetch(server.url("/"))
            assert perf.get_entries() == [ok.entry] and seen == []  # observers run later
            try:
                await client.fetch(server.url("/bad"))
            except restiming.ConnectionReset as exc:
                failed = exc.entry
            assert perf.get_entries() == [ok.entry, failed]
            for _ in range(3):
                await asyncio.sleep(0)
        observer.disconnect()
        assert seen == [ok.entry, failed]

    arun(main)


def test_response_headers_are_built_lazily_in_wire_order(arun, scripted_server):
    """The entry's fields come from one pass over h11's header list; the response's
    ``Headers`` wraps that list and decodes it only when someone looks."""
    fields = [("X-Two", "a"), ("content-type", "text/plain"), ("x-two", "b"), ("Server-Timing", "db;dur=5")]
    server = scripted_server({"/": [Send(response(200, fields, b"hello"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            r = await client.fetch(server.url("/"))
            assert type(r.headers._fields) is not list  # not decoded yet
            assert r.entry.content_type == "text/plain" and r.entry.server_timing[0].duration == 5
            assert r.headers["x-two"] == "a, b" and r.headers.get_all("X-TWO") == ["a", "b"]
            assert [n for n, _ in r.headers.items() if n.lower() != "content-length"] == \
                ["X-Two", "content-type", "x-two", "Server-Timing"]
            async with client.stream(server.url("/")) as s:
                assert s.headers.get("content-type") == "text/plain"
                assert await s.aread() == b"hello"

    arun(main)


CONTENT_TYPES = [
    ("application/javascript; charset=utf-8", "text/javascript"),
    ("text/x-ecmascript", "text/javascript"),
    ("application/ld+json", "application/json"),
    ("text/json", "application/json"),
    ("image/svg+xml", "image/svg+xml"),
    ("text/xml", "application/xml"),
    ("application/atom+xml", "application/xml"),
    ("Text/HTML;charset=x", "text/html"),
    ("application/octet-stream", "application/octet-stream"),
    ("text/plain, application/json", "application/json"),
    ("nonsense", ""),
]


@pytest.mark.parametrize(("field", "expected"), CONTENT_TYPES)
def test_content_type_is_the_minimized_essence(arun, scripted_server, field, expected):
    """Fetch's "minimize a supported MIME type" (as Chromium exposes contentType)."""
    server = scripted_server({"/": [Send(response(200, [("content-type", field)], b"x"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            assert (await client.fetch(server.url("/"))).entry.content_type == expected

    arun(main)
