"""Tests of the test peers themselves, with clients that are not restiming.

If a peer misbehaves, every engine test built on it lies, so each scripted action, the
TLS wrapping and the nginx locations are checked here with plain sockets, http.client,
urllib and curl. Every blocking call has a timeout so that a broken peer fails fast.
"""

from __future__ import annotations

import gzip
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import zlib

import pytest

from tests.peers.nginx import MAX_REDIRECT, SERVER_TIMING
from tests.peers.scripted import (
    Close, Drain, KeepOpen, Reset, ScriptedServer, Send, Sleep, Trickle,
    chunk_body, interim, response, split_response, timed_response,
)

# Registered once even when tests/conftest.py also lists it.
# peers come from tests/conftest.py

TIMEOUT = 3.0
SLACK = 0.030  # the brief's timing tolerance for scripted sleeps
GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def read_until_closed(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def read_at_least(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


# -- response builders (pure) -----------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    ({}, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
    ({"body": b"hi"}, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
    ({"status": 204}, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ({"status": 599}, b"HTTP/1.1 599 \r\ncontent-length: 0\r\n\r\n"),
    ({"body": b"hi", "content_length": 5}, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi"),
    ({"body": b"hi", "content_length": False}, b"HTTP/1.1 200 OK\r\n\r\nhi"),
    ({"body": b"abc", "chunked": True, "chunk_size": 2},
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"),
    ({"reason": "Fine", "http_version": "1.0", "headers": {"X-A": 1}},
     b"HTTP/1.0 200 Fine\r\nX-A: 1\r\ncontent-length: 0\r\n\r\n"),
])
def test_response_builder(kwargs, expected):
    assert response(**kwargs) == expected


def test_builders_compress_and_split():
    body = b"hello " * 100
    head, payload = split_response(response(200, [("content-type", "text/plain")], body, gzip=True))
    assert b"content-encoding: gzip" in head and gzip.decompress(payload) == body
    head, payload = split_response(response(body=body, deflate=True))
    assert b"content-encoding: deflate" in head and zlib.decompress(payload) == body
    assert interim(103, [("link", "</a.css>; rel=preload")]) == \
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
    assert chunk_body(b"", trailers={"x-t": "1"}) == b"0\r\nx-t: 1\r\n\r\n"
    actions = timed_response(200, (), b"body", head_delay=0.1, body_delay=0.2)
    assert [type(a) for a in actions] == [Sleep, Send, Sleep, Send]
    assert actions[0].seconds == 0.1 and actions[3].data == b"body"


# -- scripted server: requests and keep-alive --------------------------------------------

def test_default_handler_and_request_record(scripted_server):
    server = scripted_server()
    with urllib.request.urlopen(server.url("/a?b=1"), timeout=TIMEOUT) as reply:
        assert reply.status == 200 and reply.read() == b"ok"
    (request,) = server.requests
    assert (request.method, request.target, request.path) == ("GET", "/a?b=1", "/a")
    assert request.header("host") == f"127.0.0.1:{server.port}".encode()
    assert request.raw.startswith(b"GET /a?b=1 HTTP/1.1\r\n") and request.raw.endswith(b"\r\n\r\n")
    assert server.origin == f"http://127.0.0.1:{server.port}"


def test_keep_alive_two_requests_on_one_connection(scripted_server):
    server = scripted_server({"/one": response(body=b"1"), "/two": [Send(response(body=b"22"))]})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        for path, body in (("/one", b"1"), ("/two", b"22")):
            conn.request("GET", path)
            assert conn.getresponse().read() == body
        conn.request("GET", "/missing")
        assert conn.getresponse().status == 404
    finally:
        conn.close()
    assert server.connections == 1
    assert [(r.connection_index, r.request_index_on_connection) for r in server.requests] == \
        [(0, 0), (0, 1), (0, 2)]


def test_request_bodies_and_pipelining(scripted_server):
    server = scripted_server(lambda request: response(body=request.body[::-1]))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    conn.request("POST", "/", body=b"abc")
    assert conn.getresponse().read() == b"cba"
    conn.request("POST", "/", body=iter([b"de", b"f"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().read() == b"fed"
    conn.close()
    with connect(server) as sock:  # two requests in one write: the second is carried over
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxy" + GET)
        size = len(response(body=b"yx")) + len(response())
        assert read_at_least(sock, size).count(b"HTTP/1.1 200") == 2
    assert [r.body for r in server.requests] == [b"abc", b"def", b"xy", b""]


def test_connection_close_request_and_response(scripted_server):
    server = scripted_server({"/": response(body=b"x"),
                              "/bye": response(headers={"Connection": "close"}, body=b"y")})
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).endswith(b"\r\n\r\nx")
    with connect(server) as sock:
        sock.sendall(b"GET /bye HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_until_closed(sock).endswith(b"\r\n\r\ny")


def test_malformed_request_gets_400(scripted_server):
    server = scripted_server()
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_handler_errors_are_reported():
    def broken(request):
        raise ValueError("boom")

    with ScriptedServer(broken) as server:
        with connect(server) as sock:
            sock.sendall(GET)
            assert read_until_closed(sock).startswith(b"HTTP/1.1 500 ")
    assert "ValueError: boom" in server.errors[0]


# -- scripted server: actions ------------------------------------------------------------

def test_send_and_sleep_are_timed(scripted_server):
    server = scripted_server(timed_response(body=b"body", head_delay=0.2, body_delay=0.15))
    with connect(server) as sock:
        sock.sendall(GET)
        sent = time.monotonic()
        head = sock.recv(65536)
        first = time.monotonic()
        body = sock.recv(65536)
        second = time.monotonic()
    assert head.endswith(b"\r\n\r\n") and body == b"body"
    assert abs((first - sent) - 0.2) < SLACK
    assert abs((second - first) - 0.15) < SLACK


def test_close_is_a_graceful_eof(scripted_server):
    server = scripted_server([Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), Close()])
    with connect(server) as sock:
        sock.sendall(GET)
        assert read_until_closed(sock).endswith(b"abc")  # EOF, no exception


def test_reset_gives_econnreset(scripted_server):
    server = scripted_server([Sleep(0.05), Reset()])
    with connect(server) as sock:
        sock.sendall(GET)
        with pytest.raises(ConnectionResetError):
            read_until_closed(sock)


def test_reset_on_connect_before_reading(scripted_server):
    server = scripted_server(on_connect=lambda index: [Reset()] if index == 0 else [])
    with pytest.raises(ConnectionResetError):
        with connect(server) as sock:  # the RST can even beat connect() back to the client
            sock.sendall(GET)
            read_until_closed(sock)
    with connect(server) as sock:  # the second connection is served normally
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).endswith(b"ok")
    assert server.connections == 2 and len(server.requests) == 1


def test_garbage_before_reading(scripted_server):
    server = scripted_server(on_connect=lambda index: [Send(b"garbage\r\n")])
    with connect(server) as sock:
        assert sock.recv(100) == b"garbage\r\n"  # arrives before any request is sent
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 OK")


def test_trickle_spreads_bytes_over_time(scripted_server):
    server = scripted_server([Trickle(b"abcdef", interval=0.05, chunk=2), Close()])
    with connect(server) as sock:
        sock.sendall(GET)
        pieces, started = [], time.monotonic()
        while chunk := sock.recv(100):
            pieces.append(chunk)
        elapsed = time.monotonic() - started
    assert b"".join(pieces) == b"abcdef" and len(pieces) == 3
    assert abs(elapsed - 0.1) < SLACK


def test_trickle_forever_ends_when_client_leaves(scripted_server):
    server = scripted_server([Send(b"HTTP/1.1 200 OK\r\nX-Slow: "), Trickle(None, 0.01)])
    with connect(server) as sock:
        sock.sendall(GET)
        assert read_at_least(sock, 40).count(b"x") >= 10
    deadline = time.monotonic() + TIMEOUT
    while server.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.active_connections == 0


def test_interim_then_final_response(scripted_server):
    final = response(body=b"done")
    server = scripted_server([Send(interim(103, {"link": "</s.css>; rel=preload"})),
                              Sleep(0.1), Send(final)])
    with connect(server) as sock:
        sock.sendall(GET)
        first = sock.recv(65536)
        started = time.monotonic()
        second = read_at_least(sock, len(final))
        gap = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 103 Early Hints\r\n") and second == final
    assert abs(gap - 0.1) < SLACK


def test_keep_open_drain_and_never_read(scripted_server):
    for server in (scripted_server(KeepOpen()), scripted_server(Drain()),
                   scripted_server(read_requests=False)):
        with connect(server) as sock:
            sock.settimeout(0.2)
            sock.sendall(GET)
            sock.sendall(b"x" * 1000)  # Drain swallows it; the others let it sit
            with pytest.raises(socket.timeout):
                sock.recv(100)
        assert server.connections == 1
    assert server.requests == []  # read_requests=False never parsed the request


def test_stop_closes_open_connections():
    server = ScriptedServer(KeepOpen()).start()
    sock = connect(server)
    try:
        sock.sendall(GET)
        assert server.wait_for_requests(1, TIMEOUT)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        assert read_until_closed(sock) == b""
    finally:
        sock.close()


# -- TLS -----------------------------------------------------------------------------------

def test_tls_server_verified_with_ca_file(scripted_server, tls_ca):
    server = scripted_server(tls=tls_ca.server_context())
    assert server.origin.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=tls_ca.ca_file)
    for host in ("127.0.0.1", "localhost"):
        conn = http.client.HTTPSConnection(host, server.port, timeout=TIMEOUT, context=context)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        conn.request("GET", "/")  # keep-alive through the TLS layer
        assert conn.getresponse().read() == b"ok"
        conn.close()
    assert server.connections == 2 and len(server.requests) == 4


def test_tls_on_connect_runs_before_the_handshake(scripted_server, tls_ca):
    server = scripted_server(tls=tls_ca.server_context(), on_connect=lambda i: [Sleep(0.15)])
    with connect(server) as raw:
        started = time.monotonic()
        with tls_ca.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
            assert time.monotonic() - started > 0.15 - SLACK
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).endswith(b"ok")


def test_tls_untrusted_client_fails_handshake(scripted_server, tls_ca):
    server = scripted_server(tls=tls_ca.server_context())
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=TIMEOUT,
                                       context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/")
    conn.close()
    deadline = time.monotonic() + TIMEOUT
    while not server.tls_failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.tls_failures and server.requests == []


def test_tls_reset_is_a_tcp_reset(scripted_server, tls_ca):
    # TLS in memory over a plain socket, so the test sees what TCP reports; an SSLSocket
    # would turn the RST into SSLEOFError (OpenSSL 3), an asyncio transport would not.
    server = scripted_server([Reset()], tls=tls_ca.server_context())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_ca.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with connect(server) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls.write(GET)
        sock.sendall(outgoing.read())
        with pytest.raises(ConnectionResetError):
            read_until_closed(sock)  # TLS 1.3 session tickets first, then the RST


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_in_a_subprocess(scripted_server, tls_ca):
    body = b"compressible " * 200
    handler = {"/z": response(200, {"content-type": "text/plain"}, body, gzip=True,
                              chunked=True, chunk_size=100)}
    for server, extra in ((scripted_server(handler), []),
                          (scripted_server(handler, tls=tls_ca.server_context()),
                           ["--cacert", tls_ca.ca_file])):
        result = subprocess.run(
            ["curl", "-sS", "--http1.1", "--compressed", "--max-time", "3", *extra,
             server.url("/z"), server.url("/z")],
            capture_output=True, timeout=5)
        assert result.returncode == 0, result.stderr
        assert result.stdout == body * 2
        assert server.connections == 1  # curl reused the connection


# -- nginx ---------------------------------------------------------------------------------

def nginx_get(nginx, path, headers=None, *, https=False, context=None):
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    kwargs = {"context": context} if https else {}
    conn = cls("127.0.0.1", nginx.https_port if https else nginx.port, timeout=TIMEOUT, **kwargs)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.headers, reply.read()
    finally:
        conn.close()


@pytest.mark.nginx
def test_nginx_gzip(nginx):
    status, headers, body = nginx_get(nginx, "/text.html", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == nginx.files["text.html"] and len(body) < 20_000
    status, headers, body = nginx_get(nginx, "/plain/text.html", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] is None and body == nginx.files["text.html"]
    assert nginx_get(nginx, "/large.bin")[2] == nginx.files["large.bin"]
    assert len(nginx_get(nginx, "/plain/small.txt")[2]) == 1024


@pytest.mark.nginx
def test_nginx_redirects(nginx):
    status, headers, _ = nginx_get(nginx, "/redirect/3")
    assert status == 302 and headers["Location"] == "/redirect/2"
    with urllib.request.urlopen(nginx.url("/redirect/5"), timeout=TIMEOUT) as reply:
        assert reply.url.endswith("/redirect/0") and reply.read() == b"redirect done\n"
    assert nginx_get(nginx, f"/redirect/{MAX_REDIRECT}")[0] == 302
    status, headers, _ = nginx_get(nginx, "/redirect-tao/2")
    assert headers["Location"] == "/redirect-tao/1" and headers["Timing-Allow-Origin"] == "*"
    status, headers, _ = nginx_get(nginx, "/cross")
    assert status == 302 and headers["Location"] == f"{nginx.cross_origin}/small.txt"
    with urllib.request.urlopen(nginx.url("/cross"), timeout=TIMEOUT) as reply:
        assert reply.url == nginx.url("/small.txt", host="localhost")


@pytest.mark.nginx
def test_nginx_tao_server_timing_and_statuses(nginx):
    assert nginx_get(nginx, "/tao/star")[1]["Timing-Allow-Origin"] == "*"
    assert nginx_get(nginx, "/tao/origin")[1]["Timing-Allow-Origin"] == nginx.origin
    assert nginx_get(nginx, "/tao/none")[1]["Timing-Allow-Origin"] is None
    assert nginx_get(nginx, "/st")[1]["Server-Timing"] == SERVER_TIMING
    for code in (204, 404, 500):
        status, _, body = nginx_get(nginx, f"/status/{code}")
        assert status == code and body == (b"" if code == 204 else b"status %d\n" % code)


@pytest.mark.nginx
def test_nginx_keep_alive_and_https(nginx, tls_ca):
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=TIMEOUT)
    for _ in range(20):
        conn.request("GET", "/small.txt")
        reply = conn.getresponse()
        assert reply.read() == nginx.files["small.txt"] and not reply.will_close
    conn.close()
    context = ssl.create_default_context(cafile=tls_ca.ca_file)
    status, _, body = nginx_get(nginx, "/small.txt", https=True, context=context)
    assert status == 200 and body == nginx.files["small.txt"]


# -- clean shutdown ------------------------------------------------------------------------

def test_servers_stop_without_leaking_threads(tls_ca):
    before = set(threading.enumerate())
    servers = [ScriptedServer(KeepOpen()), ScriptedServer(tls=tls_ca.server_context()),
               ScriptedServer([Send(b"HTTP/1.1 200 OK\r\n"), Trickle(None, 0.01)])]
    sockets = []
    for server in servers:
        server.start()
        sock = connect(server)
        sockets.append(sock)
        if not server.tls:
            sock.sendall(GET)
    started = time.monotonic()
    for server in servers:
        server.stop()
        server.stop()  # idempotent
    assert time.monotonic() - started < 3.0
    for sock in sockets:
        sock.close()
    assert set(threading.enumerate()) <= before


def test_free_port_is_refused(free_port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", free_port()), timeout=TIMEOUT)
