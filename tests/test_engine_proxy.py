"""HTTP proxies (issue 12): real tinyproxy for absolute-form HTTP and CONNECT tunnels,
a scripted proxy for authentication and refusals, the routing table (NO_PROXY) as
data. Stamps: connect covers proxy TCP + tunnel + origin TLS; the extensions
proxy_connect_start/end are CONNECT sent / 2xx received.
"""

from __future__ import annotations

import base64
import types

import pytest

import restiming
from restiming._engine._proxy import Proxies, Proxy
from tests.engine_checks import assert_fresh, assert_opaque, assert_order, assert_reused, make_client

try:
    import h2  # noqa: F401
    HAVE_H2 = True
except ImportError:  # pragma: no cover
    HAVE_H2 = False


def _u(url: str):
    from restiming._url import parse_url

    return parse_url(url)


# ---------------------------------------------------------------- routing table
ENV = {"http_proxy": "http://p1:3128", "HTTPS_PROXY": "http://user:pw@p2:8080",
       "NO_PROXY": "localhost, .internal.test, 10.0.0.0/8, example.org:8443, [::1]"}
ROUTES = [
    ("http://example.com/", "p1:3128"),
    ("https://example.com/", "p2:8080"),
    ("http://localhost:8080/", None),
    ("http://a.internal.test/", None),
    ("http://internal.test/", None),
    ("http://xinternal.test/", "p1:3128"),
    ("http://10.1.2.3/", None),
    ("http://11.1.2.3/", "p1:3128"),
    ("https://example.org:8443/", None),
    ("https://example.org/", "p2:8080"),
    ("http://[::1]:9/", None),
]


@pytest.mark.parametrize("url, expected", ROUTES)
def test_routes_from_the_environment(url, expected):
    proxies = Proxies.configure(None, True, ENV)
    chosen = proxies.select(_u(url))
    assert (chosen.display if chosen else None) == expected


def test_explicit_proxy_wins_and_env_is_off_by_default():
    assert Proxies.configure(None, False, ENV) is None
    proxies = Proxies.configure("http://q:1", False, ENV)
    assert proxies.select(_u("https://localhost/")).display == "q:1"   # NO_PROXY only with trust_env
    proxies = Proxies.configure("http://q:1", True, ENV)
    assert proxies.select(_u("https://localhost/")) is None
    assert Proxies.configure(None, True, {"NO_PROXY": "*"}) is None
    assert Proxies.configure("http://q:1", True, {"no_proxy": "*"}).select(_u("http://a/")) is None


def test_proxy_url_parsing():
    p = Proxy("http://us%40er:p%3Ass@proxy.test:3128")
    assert p.display == "proxy.test:3128" and p.port == 3128
    assert p.authorization == b"Basic " + base64.b64encode(b"us@er:p:ss")
    assert Proxy("proxy.test").port == 80 and Proxy("proxy.test").authorization is None
    for bad in ("https://p:1", "socks5://p:1", "http://:1", "http://p:x"):
        with pytest.raises(ValueError):
            Proxy(bad)
    with pytest.raises(ValueError):
        restiming.Client(proxy="ftp://p:1")


# ------------------------------------------------------------------ tinyproxy
@pytest.mark.nginx
def test_tinyproxy_plain_http_in_absolute_form(arun, nginx, tinyproxy):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=tinyproxy.url) as client:
            first = await client.fetch(nginx.url("/plain/small.txt"))
            second = await client.fetch(nginx.url("/plain/small.txt"))
        for r in (first, second):
            assert r.status == 200 and r.body == nginx.files["small.txt"]
            e = r.entry
            assert e.proxy == f"127.0.0.1:{tinyproxy.port}"
            assert e.remote_address == f"127.0.0.1:{tinyproxy.port}"
            assert e.proxy_connect_start == e.proxy_connect_end == 0   # no tunnel for http
        assert_fresh(first.entry, tls=False)
        assert_order(second.entry)   # tinyproxy closes client connections after each answer
        assert f"127.0.0.1:{nginx.port}" in tinyproxy.log() or "small.txt" in tinyproxy.log()

    arun(main)


@pytest.mark.nginx
def test_tinyproxy_connect_tunnel_then_tls(arun, nginx, tinyproxy, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=tinyproxy.url, verify=tls_ca.ca_file) as client:
            first = await client.fetch(nginx.url("/small.txt", https=True))
            second = await client.fetch(nginx.url("/small.txt", https=True))
        e = first.entry
        assert first.status == 200 and e.proxy == f"127.0.0.1:{tinyproxy.port}"
        assert_fresh(e, tls=True)
        assert e.connect_start < e.proxy_connect_start <= e.proxy_connect_end <= e.secure_connection_start \
            <= e.connect_end
        assert e.next_hop_protocol == "http/1.1"
        assert_reused(second.entry, tls=True)
        assert second.entry.proxy_connect_start == 0 and second.entry.proxy == e.proxy
        assert "CONNECT" in tinyproxy.log()

    arun(main)


@pytest.mark.nginx
@pytest.mark.skipif(not HAVE_H2, reason="h2 is not installed")
def test_tinyproxy_tunnel_carries_http2(arun, nginx, tinyproxy, tls_ca):
    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=tinyproxy.url, verify=tls_ca.ca_file, http2=True) as client:
            r = await client.fetch(nginx.url("/plain/small.txt", h2=True))
        assert r.entry.next_hop_protocol == "h2" and r.entry.proxy_connect_end > 0
        assert_order(r.entry)

    arun(main)


@pytest.mark.nginx
def test_no_proxy_and_pools_keyed_by_proxy(arun, nginx, tinyproxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    monkeypatch.setenv("http_proxy", tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost")

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, trust_env=True) as client:
            proxied = await client.fetch(nginx.url("/plain/small.txt"))
            direct = await client.fetch(nginx.url("/plain/small.txt", host="localhost"))
            keys = set(client._pool._idle)
        async with make_client(perf) as client:   # trust_env is off by default
            off = await client.fetch(nginx.url("/plain/small.txt"))
        assert proxied.entry.proxy == f"127.0.0.1:{tinyproxy.port}"
        assert direct.entry.proxy == "" and off.entry.proxy == ""
        assert any(len(k) == 4 for k in keys) and any(len(k) == 3 for k in keys)

    arun(main)


# ------------------------------------------------------------ scripted proxy
def _requires(user: str, password: str):
    expected = b"proxy-authorization: basic " + base64.b64encode(f"{user}:{password}".encode()).lower()

    def handler(head: bytes):
        return None if expected in head.lower() else 407

    return handler


def test_tunnel_credentials_go_only_to_the_proxy(arun, scripted_proxy, scripted_server, tls_ca):
    proxy = scripted_proxy(_requires("alice", "s3cret"))
    origin = scripted_server(None, tls=tls_ca.server_context())

    async def main():
        perf = restiming.Performance()
        url = f"https://127.0.0.1:{origin.port}/x"
        async with make_client(perf, proxy=f"http://alice:s3cret@127.0.0.1:{proxy.port}",
                               verify=tls_ca.ca_file) as client:
            r = await client.fetch(url)
        assert r.status == 200 and r.entry.proxy == f"127.0.0.1:{proxy.port}"
        assert r.entry.proxy_connect_end > 0
        (head,) = proxy.heads
        assert head.startswith(b"CONNECT 127.0.0.1:") and b"Proxy-Authorization: Basic" in head
        (request,) = origin.requests
        names = {n for n, _ in request.headers}
        assert b"proxy-authorization" not in names and b"authorization" not in names

    arun(main)


def test_absolute_form_carries_proxy_authorization(arun, scripted_proxy, scripted_server):
    proxy = scripted_proxy(_requires("bob", "pw"))
    origin = scripted_server(None)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=f"http://bob:pw@127.0.0.1:{proxy.port}") as client:
            r = await client.fetch(f"http://127.0.0.1:{origin.port}/plain")
        assert r.status == 200
        (head,) = proxy.heads
        assert head.startswith(f"GET http://127.0.0.1:{origin.port}/plain HTTP/1.1".encode())
        assert b"\r\nProxy-Authorization: Basic" in head and b"\r\nAuthorization:" not in head

    arun(main)


@pytest.mark.parametrize("status", [407, 403, 502])
def test_refused_tunnel_is_a_proxy_error_with_the_status(arun, scripted_proxy, status):
    proxy = scripted_proxy(lambda head: status)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=proxy.url) as client:
            with pytest.raises(restiming.ProxyError) as info:
                await client.fetch("https://origin.invalid/")
        exc = info.value
        assert exc.status == status and exc.kind == "connect" and str(status) in str(exc)
        assert_opaque(exc.entry, error="connect")
        assert exc.entry.proxy == f"127.0.0.1:{proxy.port}"

    arun(main)


def test_unreachable_proxy_is_a_proxy_error(arun, free_port):
    port = free_port()

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=f"http://127.0.0.1:{port}") as client:
            with pytest.raises(restiming.ProxyError) as info:
                await client.fetch("http://origin.invalid/")
        assert info.value.status == 0 and "proxy" in str(info.value)

    arun(main)


def test_proxy_closing_during_connect_is_a_proxy_error(arun, scripted_server):
    from tests.peers.scripted import Close

    silent = scripted_server([Close()])

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, proxy=f"http://127.0.0.1:{silent.port}") as client:
            with pytest.raises(restiming.ProxyError):
                await client.fetch("https://origin.invalid/")

    arun(main)


def test_entries_export_the_proxy_fields():
    fields = types.SimpleNamespace(**{n: n for n in restiming.PerformanceResourceTiming.__dict__})
    for name in ("proxy", "proxy_connect_start", "proxy_connect_end"):
        assert hasattr(fields, name)
