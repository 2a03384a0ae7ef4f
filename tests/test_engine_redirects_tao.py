"""Redirects and the Timing-Allow-Origin check through the engine (SPEC.md §3).

Redirect chains: the stamps of the final hop with ``startTime == redirectStart``, the
Fetch rules for methods, bodies and credentials, the limit of 20 and non-http(s)
Locations. TAO: the matrix of header forms against a configured document origin, the
opaque shape a failure leaves, the ``null`` request origin after a cross-origin hop.
Two origins are two ScriptedServers on 127.0.0.1 (the port differs).
"""

from __future__ import annotations

import pytest

import restiming
from tests.engine_checks import (
    TRANSFER_SIZE_OVERHEAD,
    assert_exposed,
    assert_opaque,
    assert_order,
    assert_reused,
    assert_usable,
    expect_error,
    make_client,
)
from tests.peers.scripted import Send, Sleep, response

DOCUMENT = "http://example.com"


def redirect(status: int, location: str | None, *, body: bytes = b"", headers=()):
    pairs = list(headers) + ([("location", location)] if location is not None else [])
    return [Send(response(status, pairs, body))]


def countdown(request):
    """``/n/K`` redirects to ``/n/K-1``; ``/n/0`` answers."""
    k = int(request.path.rsplit("/", 1)[1])
    if k == 0:
        return [Send(response(200, body=b"done"))]
    return redirect(302, f"/n/{k - 1}")


# -- redirect chains ------------------------------------------------------------------------

def test_same_origin_chain_stamps_and_sizes(arun, scripted_server):
    final = b"final body"
    server = scripted_server({
        "/start": [Sleep(0.02)] + redirect(301, "/middle", body=b"r" * 700),
        "/middle": [Sleep(0.02)] + redirect(302, "/final?x=1", body=b"s" * 900),
        "/final": [Sleep(0.02), Send(response(200, [("content-type", "text/plain")], final))],
    })
    url = server.url("/start#frag")

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(url)
        e = response_.entry
        assert response_.status == 200 and response_.body == final
        assert response_.url == server.url("/final?x=1#frag")  # the fragment carries over
        assert perf.get_entries() == [e]
        assert e.name == url  # named by the URL asked for
        assert_order(e)
        assert e.redirect_start == e.start_time
        assert e.redirect_end > e.redirect_start
        assert e.fetch_start >= e.redirect_end
        assert e.fetch_start > e.start_time
        # the final hop reuses the connection: its stamps collapse onto its fetchStart
        assert_reused(e, tls=False)
        assert e.response_start - e.request_start >= 15
        assert e.encoded_body_size == e.decoded_body_size == len(final)
        assert e.transfer_size == len(final) + TRANSFER_SIZE_OVERHEAD
        assert e.response_status == 200 and e.content_type == "text/plain"
        assert [r.path for r in server.requests] == ["/start", "/middle", "/final"]

    arun(main)


def test_chain_to_another_origin_stamps_final_connection(arun, scripted_server):
    target = scripted_server(None)
    origin = scripted_server({"/go": redirect(302, target.url("/landing"))})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            e = (await client.fetch(origin.url("/go"))).entry
        assert_order(e)
        assert e.redirect_start == e.start_time and e.redirect_end >= e.redirect_start
        # a new connection for the final hop: DNS and connect after fetchStart
        assert e.fetch_start >= e.redirect_end
        assert e.fetch_start <= e.domain_lookup_start <= e.connect_start < e.connect_end
        assert e.connection_reused is False
        assert e.remote_address == f"127.0.0.1:{target.port}"

    arun(main)


@pytest.mark.parametrize("status, method, expected_method, keeps_body", [
    (301, "POST", "GET", False),
    (302, "POST", "GET", False),
    (303, "POST", "GET", False),
    (303, "PUT", "GET", False),
    (303, "HEAD", "HEAD", True),  # unchanged: only non-GET/HEAD become GET
    (307, "POST", "POST", True),
    (308, "PUT", "PUT", True),
    (301, "PUT", "PUT", True),
])
def test_redirect_method_and_body_rules(arun, scripted_server, status, method, expected_method, keeps_body):
    server = scripted_server({"/form": redirect(status, "/next"), "/next": [Send(response(200, body=b""))]})
    body = b'{"answer": 42}'

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/form"), method=method, body=body,
                                           headers={"Content-Type": "application/json"})
        assert response_.status == 200
        first, second = server.requests
        assert first.method == method and first.body == body
        assert second.method == expected_method
        if keeps_body:
            assert second.body == body
            assert second.header("content-type") == b"application/json"
        else:
            assert second.body == b""
            assert second.header("content-type") is None
            assert second.header("content-length") in (None, b"0")

    arun(main)


def test_credentials_dropped_on_cross_origin_redirect(arun, scripted_server):
    other = scripted_server(None)
    home = scripted_server({"/same": redirect(302, "/here"), "/here": [Send(response(200))],
                            "/away": redirect(307, other.url("/there"))})
    secrets = {"Authorization": "Bearer s3cret", "Cookie": "session=1", "X-Trace": "abc"}

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await client.fetch(home.url("/same"), headers=secrets)
            await client.fetch(home.url("/away"), headers=secrets, method="POST", body=b"b")
        same_first, same_second, away = home.requests
        for request in (same_first, same_second, away):
            assert request.header("authorization") == b"Bearer s3cret"
            assert request.header("cookie") == b"session=1"
        (there,) = other.requests
        assert there.method == "POST" and there.body == b"b"
        assert there.header("authorization") is None and there.header("cookie") is None
        assert there.header("x-trace") == b"abc"
        assert there.header("host") == f"127.0.0.1:{other.port}".encode()

    arun(main)


def test_twenty_redirects_pass_and_twenty_one_fail(arun, scripted_server):
    server = scripted_server(countdown)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            ok = await client.fetch(server.url("/n/20"))
            assert ok.body == b"done" and ok.entry.redirect_start == ok.entry.start_time
            assert len(server.requests) == 21
            exc = await expect_error(client, perf, server.url("/n/21"), restiming.TooManyRedirects,
                                     "too_many_redirects")
            assert isinstance(exc, restiming.RedirectError)
            assert len(server.requests) == 21 + 21  # the 21st Location is not followed
            await assert_usable(client, server.url("/n/0"), b"done")

    arun(main)


def test_max_redirects_option(arun, scripted_server):
    server = scripted_server(countdown)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, max_redirects=2) as client:
            assert (await client.fetch(server.url("/n/2"))).body == b"done"
            await expect_error(client, perf, server.url("/n/3"), restiming.TooManyRedirects,
                               "too_many_redirects")
        async with make_client(perf, max_redirects=0) as client:
            await expect_error(client, perf, server.url("/n/1"), restiming.TooManyRedirects,
                               "too_many_redirects")

    arun(main)


@pytest.mark.parametrize("location", ["ftp://example.com/file", "file:///etc/passwd",
                                      "javascript:alert(1)", "data:text/plain,hi"])
def test_non_http_location_is_a_network_error(arun, scripted_server, location):
    server = scripted_server({"/go": redirect(302, location), "/ok": [Send(response(200))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await expect_error(client, perf, server.url("/go"), restiming.RedirectSchemeError,
                               "redirect_scheme")
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_redirect_with_a_large_body_costs_its_connection(arun, scripted_server):
    server = scripted_server({"/big": redirect(302, "/final", body=b"r" * 300_000),
                              "/final": [Send(response(200, body=b"final"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/big"))
        e = response_.entry
        assert response_.body == b"final" and e.encoded_body_size == 5
        assert e.redirect_start == e.start_time and e.fetch_start >= e.redirect_end
        assert e.connection_reused is False  # the rest of the redirect body was not read
        assert server.connections == 2

    arun(main)


def test_redirect_without_location_is_the_final_response(arun, scripted_server):
    server = scripted_server({"/": redirect(302, None, body=b"no location")})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            response_ = await client.fetch(server.url("/"))
        e = response_.entry
        assert response_.status == 302 and response_.body == b"no location"
        assert e.response_status == 302 and e.error is None
        assert e.redirect_start == e.redirect_end == 0 and e.fetch_start == e.start_time
        assert e.encoded_body_size == len(b"no location")

    arun(main)


def test_follow_redirects_false_returns_the_redirect(arun, scripted_server):
    server = scripted_server({"/": redirect(301, "/elsewhere")})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, follow_redirects=False) as client:
            response_ = await client.fetch(server.url("/"))
        assert response_.status == 301 and response_.headers["location"] == "/elsewhere"
        assert response_.entry.redirect_start == 0
        assert len(server.requests) == 1

    arun(main)


# -- Timing-Allow-Origin --------------------------------------------------------------------

def _tao_handler(request):
    """``/tao?h=VALUE&h=VALUE`` answers with one Timing-Allow-Origin field per value."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(request.target).query, keep_blank_values=True).get("h", [])
    headers = [("timing-allow-origin", v) for v in values]
    headers += [("server-timing", "app;dur=12"), ("content-type", "text/plain")]
    return [Send(response(200, headers, b"tao body"))]


def _tao_url(server, *values: str) -> str:
    from urllib.parse import urlencode

    return server.url("/tao" + ("?" + urlencode([("h", v) for v in values]) if values else ""))


@pytest.mark.parametrize("origin, values, exposed", [
    (None, (), True),                                            # no document origin
    ("same", (), True),                                          # same-origin needs no TAO
    (DOCUMENT, ("*",), True),
    (DOCUMENT, (DOCUMENT,), True),
    (DOCUMENT, ("HTTP://EXAMPLE.COM",), False),                  # case-sensitive
    (DOCUMENT, (DOCUMENT + "/",), False),                        # not a serialized origin
    (DOCUMENT, ("http://other.test,   " + DOCUMENT + "  ",), True),  # list, items trimmed
    (DOCUMENT, ("http://other.test", DOCUMENT), True),           # several fields, combined
    (DOCUMENT, ("http://other.test",), False),
    (DOCUMENT, ("null",), False),
    (DOCUMENT, ("",), False),
    (DOCUMENT, (), False),                                       # missing
    ("http://example.com:8080", (DOCUMENT,), False),             # the port is part of it
], ids=lambda v: repr(v) if not isinstance(v, bool) else ("exposed" if v else "opaque"))
def test_tao_matrix(arun, scripted_server, origin, values, exposed):
    server = scripted_server({"/tao": _tao_handler})

    async def main():
        perf = restiming.Performance()
        document = server.origin if origin == "same" else origin
        async with make_client(perf, origin=document) as client:
            response_ = await client.fetch(_tao_url(server, *values))
        e = response_.entry
        assert response_.status == 200 and response_.body == b"tao body"
        assert e.response_status == 200 and e.error is None
        if exposed:
            assert_exposed(e)
            assert e.encoded_body_size == len(b"tao body")
            assert [t.name for t in e.server_timing] == ["app"]
        else:
            assert_opaque(e, status=200)

    arun(main)


def test_performance_origin_is_the_default_document_origin(arun, scripted_server):
    server = scripted_server({"/tao": _tao_handler})

    async def main():
        perf = restiming.Performance(origin=DOCUMENT)
        async with make_client(perf) as client:
            hidden = (await client.fetch(_tao_url(server))).entry
        async with make_client(perf, origin=server.origin) as client:  # the Client's wins
            shown = (await client.fetch(_tao_url(server))).entry
        assert_opaque(hidden, status=200)
        assert_exposed(shown)

    arun(main)


def test_opaque_redirected_entry_keeps_original_start(arun, scripted_server):
    server = scripted_server({"/go": [Sleep(0.03)] + redirect(302, "/tao"), "/tao": _tao_handler})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, origin=DOCUMENT) as client:
            response_ = await client.fetch(server.url("/go"))
        e = response_.entry
        assert_opaque(e, status=200)
        assert e.fetch_start == e.start_time  # the original start, not the final hop's
        assert e.duration >= 30

    arun(main)


@pytest.mark.parametrize("final_tao, exposed", [
    (DOCUMENT, False),   # the request origin became "null"
    ("null", True),
    ("*", True),
])
def test_cross_origin_redirect_taints_request_origin(arun, scripted_server, final_tao, exposed):
    second = scripted_server({"/tao": _tao_handler})
    first = scripted_server({"/go": redirect(302, _tao_url(second, final_tao),
                                             headers=[("timing-allow-origin", DOCUMENT)])})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, origin=DOCUMENT) as client:
            e = (await client.fetch(first.url("/go"))).entry
        if exposed:
            assert_exposed(e)
            assert e.redirect_start == e.start_time and e.redirect_end > 0
        else:
            assert_opaque(e, status=200)

    arun(main)


@pytest.mark.parametrize("hop_tao, final_tao, exposed", [
    (None, None, False),      # the cross-origin hop has no TAO
    (None, "*", False),       # a later TAO does not undo the failure
    ("*", None, False),       # back on the document's origin, but the chain left it
    ("*", "*", True),
], ids=["none-none", "none-star", "star-none", "star-star"])
def test_chain_through_cross_origin_hop(arun, scripted_server, hop_tao, final_tao, exposed):
    home_routes = {"/tao": _tao_handler}
    home = scripted_server(home_routes)  # routes completed below, once the ports are known
    final_url = _tao_url(home, final_tao) if final_tao else home.url("/tao")
    hop_headers = [("timing-allow-origin", hop_tao)] if hop_tao else []
    away = scripted_server({"/hop": redirect(302, final_url, headers=hop_headers)})
    home_routes["/start"] = redirect(302, away.url("/hop"))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, origin=home.origin) as client:
            response_ = await client.fetch(home.url("/start"))
            plain = (await client.fetch(home.url("/tao"))).entry  # same-origin, no TAO: exposed
        e = response_.entry
        assert response_.status == 200
        assert [r.path for r in home.requests] == ["/start", "/tao", "/tao"]
        if exposed:
            assert_exposed(e)
            assert e.redirect_start == e.start_time
        else:
            assert_opaque(e, status=200)
        assert_exposed(plain)

    arun(main)
