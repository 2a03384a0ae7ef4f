"""The engine against a real nginx (fixture ``nginx``, SPEC.md §3): keep-alive reuse,
gzip, redirect chains, Timing-Allow-Origin, Server-Timing, exact sizes and TLS.

The fixture fails (not skips) these tests when CI=true and nginx is missing. The
served files are known byte for byte (``nginx.files``), so bodies and sizes are exact.
"""

from __future__ import annotations

import pytest

import restiming
from tests.engine_checks import (
    TRANSFER_SIZE_OVERHEAD,
    assert_exposed,
    assert_fresh,
    assert_opaque,
    assert_order,
    assert_reused,
    expect_error,
    make_client,
)
from tests.peers.nginx import SERVER_TIMING, STATUSES

pytestmark = pytest.mark.nginx


def test_keepalive_reuse_across_fetches(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            responses = [await client.fetch(nginx.url(path)) for path in
                         ("/small.txt", "/plain/small.txt", "/large.bin", "/small.txt")]
            assert client.open_connections == 1
        first, *rest = [r.entry for r in responses]
        assert_fresh(first, tls=False)
        for e in rest:
            assert_reused(e, tls=False)
            assert e.connection_id == first.connection_id
        assert responses[0].body == responses[1].body == nginx.files["small.txt"]
        assert [e.response_status for e in perf.get_entries()] == [200] * 4

    arun(main)


def test_gzip_is_decoded(arun, nginx):
    html = nginx.files["text.html"]

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            gzipped = await client.fetch(nginx.url("/text.html"))
            plain = await client.fetch(nginx.url("/plain/text.html"))
        e = gzipped.entry
        assert gzipped.body == html and gzipped.headers["content-encoding"] == "gzip"
        assert e.content_encoding == "gzip" and e.content_type == "text/html"
        assert e.decoded_body_size == len(html)
        assert 0 < e.encoded_body_size < e.decoded_body_size
        assert e.transfer_size == e.encoded_body_size + TRANSFER_SIZE_OVERHEAD
        assert e.bytes_received > e.encoded_body_size
        p = plain.entry
        assert plain.body == html and p.content_encoding == ""
        assert p.encoded_body_size == p.decoded_body_size == len(html)

    arun(main)


@pytest.mark.parametrize("path", ["/large.bin", "/plain/large.bin"])
def test_large_body_sizes_are_exact(arun, nginx, path):
    data = nginx.files["large.bin"]
    assert len(data) == 1 << 20

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response = await client.fetch(nginx.url(path))
            async with client.stream(nginx.url(path)) as streamed:
                chunks = [chunk async for chunk in streamed.aiter_bytes()]
        e = response.entry
        assert response.body == data
        assert e.encoded_body_size == e.decoded_body_size == 1 << 20
        assert e.transfer_size == (1 << 20) + TRANSFER_SIZE_OVERHEAD
        assert e.content_type == "application/octet-stream"
        assert e.bytes_received > 1 << 20
        assert b"".join(chunks) == data and len(chunks) > 1
        s = streamed.entry
        assert s.encoded_body_size == 1 << 20 and s.connection_reused
        assert_order(e)
        assert_order(s)

    arun(main)


def test_redirect_chain(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response = await client.fetch(nginx.url("/redirect/5"))
            twenty = await client.fetch(nginx.url("/redirect/20"))
            await expect_error(client, perf, nginx.url("/redirect/21"), restiming.TooManyRedirects,
                               "too_many_redirects")
        e = response.entry
        assert response.body == b"redirect done\n" and response.url == nginx.url("/redirect/0")
        assert e.name == nginx.url("/redirect/5")
        assert e.redirect_start == e.start_time and e.redirect_end > e.redirect_start
        assert e.fetch_start >= e.redirect_end
        assert_reused(e, tls=False)  # nginx kept the connection across the hops
        assert e.decoded_body_size == len(b"redirect done\n")  # gzipped by nginx: sizes differ
        assert e.content_encoding == "gzip" and e.encoded_body_size > 0
        assert twenty.status == 200 and twenty.entry.redirect_start == twenty.entry.start_time

    arun(main)


@pytest.mark.parametrize("path, document, exposed", [
    ("/tao/star", "http://example.com", True),
    ("/tao/origin", "http://example.com", False),
    ("/tao/none", "http://example.com", False),
    ("/tao/none", "same", True),
    ("/tao/origin", "cross", False),          # TAO names 127.0.0.1, the document is localhost
    ("/redirect-tao/3", "http://example.com", True),
    ("/redirect/3", "http://example.com", False),
    ("/cross", "same", False),                # to localhost without TAO
    ("/cross-tao", "same", True),
])
def test_timing_allow_origin(arun, nginx, path, document, exposed):
    origin = {"same": nginx.origin, "cross": nginx.cross_origin}.get(document, document)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, origin=origin) as client:
            response = await client.fetch(nginx.url(path))
        e = response.entry
        assert response.status == 200 and e.response_status == 200
        if exposed:
            assert_exposed(e)
            assert e.encoded_body_size > 0
        else:
            assert_opaque(e, status=200)

    arun(main)


def test_same_origin_tao_header_names_the_document(arun, nginx):
    async def main():
        perf = restiming.Performance()
        # /tao/origin allows exactly http://127.0.0.1:PORT: fetched through localhost (another
        # origin of the same server) by a document on 127.0.0.1, the exact match passes.
        async with make_client(perf, origin=f"http://127.0.0.1:{nginx.port}") as client:
            e = (await client.fetch(nginx.url("/tao/origin", host="localhost"))).entry
        assert_exposed(e)

    arun(main)


def test_server_timing(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response = await client.fetch(nginx.url("/st"))
        assert response.headers["server-timing"] == SERVER_TIMING
        timing = [(t.name, t.duration, t.description) for t in response.entry.server_timing]
        assert timing == [("db", 53.2, "query"), ("cache", 0.0, "hit")]
        assert response.entry.to_json()["serverTiming"] == [
            {"name": "db", "duration": 53.2, "description": "query"},
            {"name": "cache", "duration": 0.0, "description": "hit"},
        ]

    arun(main)


def test_statuses_are_responses_not_errors(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            for status in STATUSES:
                response = await client.fetch(nginx.url(f"/status/{status}"))
                assert response.status == status and response.entry.response_status == status
                assert response.entry.error is None
        assert len(perf.get_entries()) == len(STATUSES)

    arun(main)


def test_post_body(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response = await client.fetch(nginx.url("/post"), method="POST", body=b"p" * 100_000)
        assert response.body == b"posted\n"
        assert response.entry.bytes_sent > 100_000
        assert response.entry.request_start <= response.entry.request_end <= response.entry.response_end

    arun(main)


def test_tls(arun, nginx, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            first = await client.fetch(nginx.url("/small.txt", https=True))
            second = await client.fetch(nginx.url("/large.bin", https=True))
        assert first.body == nginx.files["small.txt"] and second.body == nginx.files["large.bin"]
        assert_fresh(first.entry, tls=True)
        assert first.entry.next_hop_protocol == "http/1.1"
        assert first.entry.remote_address == f"127.0.0.1:{nginx.https_port}"
        assert_reused(second.entry, tls=True)
        assert second.entry.encoded_body_size == 1 << 20

    arun(main)


def test_tls_refused_without_the_test_ca(arun, nginx):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await expect_error(client, perf, nginx.url("/small.txt", https=True), restiming.TLSError, "tls")
            assert (await client.fetch(nginx.url("/small.txt"))).status == 200

    arun(main)
