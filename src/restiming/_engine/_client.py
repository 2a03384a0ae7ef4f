"""The client layer: ``restiming.Client``, one Resource Timing entry per fetch.

A fetch is one coroutine. It validates the whole request before any socket (the
h11 request event and its bytes are built, and cached, here), takes an idle pooled
connection without a coroutine in the common case (or waits for a slot and opens
one, stamping DNS, connect and TLS), writes the request inline and awaits one
wake-up from the connection's protocol callbacks: at the end of the response for
``fetch()``, at the head for ``stream()`` and for a redirect it follows. Redirects
follow Fetch's method and header rules and never wait for the redirect's body; the
Timing-Allow-Origin check runs on every response of the chain. Every deadline is
data swept by one timer per client (``_deadlines``). Any failure records one opaque
entry with the ``error`` kind and raises the typed exception; ``OSError``, ``ssl``
and ``h11`` errors are translated at this boundary with their cause kept.
https://fetch.spec.whatwg.org/#http-redirect-fetch
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl

import h11

from restiming._binding import lib
from restiming._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    DNSError,
    FetchError,
    InvalidRequest,
    InvalidURL,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    RedirectSchemeError,
    StreamRefused,
    TooManyRedirects,
    TotalTimeout,
)
from restiming._fields import SLOT
from restiming._mime import content_type_attribute
from restiming._tao import TaoCheck
from restiming._timeline import Performance
from restiming._url import normalize_origin, parse_url, resolve_location

from ._config import Limits, Timeout
from ._deadlines import GRANULARITY_NS, Sweep, TaskDeadline
from ._decoding import Decoder, content_encoding_attribute, supported_encodings
from ._dns import CachingResolver
from ._http11 import DONE, HTTP11Connection
from ._models import Headers, Response
from ._network import open_connection, translate_io, warm_up
from ._pool import Pool
from ._request import Requests, body_bytes, check_initiator, check_intended_start, redirect_request
from ._proxy import Proxies, Tunnel
from ._stream import StreamContext

__all__ = ["Client"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
# Stamps that describe one hop's connection and exchange; a new hop or a retry resets them.
HOP_STAMPS = tuple(SLOT[s] for s in (
    "domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end", "secure_connection_start",
    "request_start", "request_end", "first_interim_response_start", "final_response_headers_start",
    "response_end", "proxy_connect_start", "proxy_connect_end"))
_START, _FETCH = SLOT["start_time"], SLOT["fetch_start"]
_REDIRECT_START, _REDIRECT_END = SLOT["redirect_start"], SLOT["redirect_end"]
_DNS_START, _DNS_END = SLOT["domain_lookup_start"], SLOT["domain_lookup_end"]
_CONNECT_START, _CONNECT_END = SLOT["connect_start"], SLOT["connect_end"]
_SECURE, _RESPONSE_END = SLOT["secure_connection_start"], SLOT["response_end"]
# Raised as they are (no foreign cause to chain).
_OURS = (FetchError, ClientClosed, asyncio.CancelledError)
_now = lib.rt_now_ns
_NS = 1_000_000_000
_HTTP_VERSIONS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}

def _ssl_context(verify, alpn=("http/1.1",)) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is True:
        ctx = ssl.create_default_context()
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, (str, os.PathLike)):
        if not os.path.isfile(verify):
            raise InvalidRequest(f"verify: CA file {os.fspath(verify)!r} does not exist")
        try:
            ctx = ssl.create_default_context(cafile=os.fspath(verify))
        except ssl.SSLError as exc:
            raise InvalidRequest(f"verify: cannot load CA file {os.fspath(verify)!r}: {exc}") from exc
    else:
        raise TypeError("verify must be True, False, a CA file path or an ssl.SSLContext")
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def _field(fields: dict, name: bytes) -> str:
    """A response field's values combined with ", " (RFC 9110), "" when absent."""
    values = fields.get(name)
    if not values:
        return ""
    if len(values) == 1:
        return values[0].decode("latin-1")
    return b", ".join(values).decode("latin-1")


def _ns(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * _NS)


class _Fetch:
    """State of one fetch across its hops."""

    __slots__ = ("rec", "stamps", "url", "origin", "https", "method", "headers", "body", "timeout", "ns",
                 "total_due", "conn", "reused", "tao", "sent", "received", "finished", "intended_start",
                 "history", "request", "head", "proxy")

    def __init__(self, rec, url, method, headers, body, timeout, ns, tao, intended_start, request, head,
                 proxy=None) -> None:
        self.rec = rec
        self.stamps = rec.stamps
        self.go_to(url, proxy)
        self.method = method
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.ns = ns  # (connect, read, write, pool, total) in ns, 0 = none
        self.total_due = self.stamps[_START] + ns[4] if ns[4] else 0
        self.conn = None
        self.reused = False
        self.tao = tao
        self.sent = 0
        self.received = 0
        self.finished = False
        self.intended_start = intended_start
        self.history: list[tuple[int, str]] = []  # (status, url) of each redirect followed
        self.request = request  # the h11 event of the current hop, and its bytes
        self.head = head

    def go_to(self, url, proxy) -> None:
        """The hop's URL, its proxy route and its pool key (the origin, and the proxy
        when the fetch goes through one)."""
        self.url = url
        self.proxy = proxy
        self.origin = (url.scheme, url.host, url.port) if proxy is None else \
            (url.scheme, url.host, url.port, proxy.key)
        self.https = url.scheme == "https"


class Client:
    """An HTTP/1.1 (and, with ``http2=True``, HTTP/2) client that records a Resource
    Timing entry for every fetch; through a proxy when configured.

    See SPEC §2 for the parameters. Use as ``async with Client() as client``; a
    client belongs to the event loop it first fetches on.
    """

    def __init__(self, performance: Performance | None = None, *, origin: str | None = None,
                 timeout: Timeout | float | None = 30.0, verify=True, follow_redirects: bool = True,
                 max_redirects: int = 20, resolver=None, limits: Limits | None = None, http2: bool = False,
                 proxy=None, trust_env: bool = False) -> None:
        if performance is None:
            from restiming import performance as default

            performance = default
        if not isinstance(performance, Performance):
            raise TypeError(f"performance must be a restiming.Performance, not {type(performance).__name__}")
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
            raise InvalidRequest(f"max_redirects must be an int >= 0, got {max_redirects!r}")
        if resolver is not None and not callable(getattr(resolver, "resolve", None)):
            raise TypeError("resolver must have an async resolve(host, port) method")
        limits = Limits() if limits is None else limits
        if not isinstance(limits, Limits):
            raise TypeError("limits must be a restiming.Limits")
        self.performance = performance
        self.origin = normalize_origin(origin) if origin is not None else performance.origin
        self.timeout = Timeout.coerce(timeout)
        self._timeout_ns = self._to_ns(self.timeout)
        self.follow_redirects = bool(follow_redirects)
        self.max_redirects = max_redirects
        self.limits = limits
        self._verify = verify
        self.http2 = bool(http2)
        # HTTP/2 (the optional h2 package): offered by ALPN before http/1.1.
        self._alpn = ("h2", "http/1.1") if self.http2 else ("http/1.1",)
        if self.http2:
            from . import _http2  # noqa: F401  (ImportError now, not mid-fetch)
        self._ssl: ssl.SSLContext | None = None
        if verify is not True:
            self._ssl = _ssl_context(verify, self._alpn)  # validate now: bad input fails at construction
        self._resolver = resolver if resolver is not None else CachingResolver()
        self._proxies = Proxies.configure(proxy, trust_env) if proxy is not None or trust_env else None
        self._pool = Pool(limits, self.http2)
        self._sweep = Sweep()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._req = Requests(", ".join(supported_encodings()).encode())
        self._deliver = REDIRECT_STATUSES if self.follow_redirects else False
        self._make_decoder = functools.partial(_decoder, limits)
        self._closed = False
        # Tasks opening a connection or waiting for a slot: no pooled connection
        # exists yet for close() to abort, so close() cancels them and they raise
        # ClientClosed instead of waiting out their deadline.
        self._connecting: set = set()
        self._interrupted: set = set()

    async def __aenter__(self) -> "Client":
        await self._adopt(asyncio.get_running_loop())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection. In-flight fetches fail; new ones raise ClientClosed."""
        self._closed = True
        self._pool.close()
        for task in self._connecting:
            if task is not asyncio.current_task():
                self._interrupted.add(task)
                task.cancel()
        self._connecting.clear()
        self._sweep.close()

    @property
    def open_connections(self) -> int:
        return self._pool.open_connections

    async def _adopt(self, loop) -> None:
        """First use on ``loop``: pay the loop's one-time connect costs outside any
        fetch, before anything is stamped."""
        if self._loop is not loop:
            await warm_up(loop)
            self._loop = loop

    @staticmethod
    def _to_ns(t: Timeout) -> tuple:
        return (_ns(t.connect), _ns(t.read), _ns(t.write), _ns(t.pool), _ns(t.total))

    # ---------------------------------------------------------------- public
    async def fetch(self, url: str, *, method: str = "GET", headers=None, body=None,
                    initiator_type: str = "fetch", timeout=None, intended_start: int | None = None) -> Response:
        """Fetch ``url`` and read the whole body. The entry is in the timeline before
        this returns or raises; ``response.entry`` is it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._adopt(loop)
        ex = self._begin(url, method, headers, body, initiator_type, timeout, intended_start)
        try:
            conn = await self._exchange(ex, self._deliver)
            if conn.deliver_head or ex.tao is not None:
                conn = await self._follow(ex, conn, False)
            head = conn.head
            body = conn.body
            if body is None:
                body = b""
            elif type(body) is not bytes:
                body = bytes(body)
            entry = self._finish(ex, conn, True)
            return Response(head.status_code, head.reason.decode("latin-1"), Headers.from_h11(head.headers), body,
                            ex.url.href, entry, _HTTP_VERSIONS.get(head.http_version) or
                            "HTTP/" + head.http_version.decode("ascii"), ex.history)
        except BaseException as exc:
            err = self._fail(ex, exc)
            if err is exc:
                raise
            raise err from exc

    def stream(self, url: str, *, method: str = "GET", headers=None, body=None,
               initiator_type: str = "fetch", timeout=None, intended_start: int | None = None):
        """``async with client.stream(url) as response``: the body as async chunks.
        The entry is recorded when the body ends or the stream closes."""
        return StreamContext(self, (url, method, headers, body, initiator_type, timeout, intended_start))

    # -------------------------------------------------------------- internals
    async def _start_stream(self, args: tuple) -> _Fetch:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._adopt(loop)
        return self._begin(*args)

    def _begin(self, url, method, headers, body, initiator_type, timeout, intended_start) -> _Fetch:
        """Validate everything the caller gave, then start the entry: a caller's
        mistake raises here, before any socket, and records nothing."""
        if self._closed:
            raise ClientClosed("this Client was closed")
        req = self._req
        plain = body is None and timeout is None and intended_start is None and initiator_type == "fetch"
        if plain:
            # The load generator's call: everything but the entry is known already.
            known = req.lookup(url, method, headers)
            if known is not None:
                u, m, hdrs, request, head, proxy = known
                rec = self.performance.begin(url, initiator_type)
                tao = TaoCheck(self.origin, u.origin) if self.origin is not None else None
                return _Fetch(rec, u, m, hdrs, b"", self.timeout, self._timeout_ns, tao, None, request, head, proxy)
        u = req.url(url)
        m = req.method(method)
        hdrs = req.headers(headers)
        data = body_bytes(body)
        if timeout is None:
            t, ns = self.timeout, self._timeout_ns
        else:
            t = Timeout.coerce(timeout)  # InvalidRequest (or TypeError) for a bad value
            ns = self._to_ns(t)
        if intended_start is not None:
            check_intended_start(intended_start)
        if initiator_type != "fetch":
            check_initiator(initiator_type)
        proxy = self._proxies.select(u) if self._proxies is not None else None
        request, head = req.event(u, m, hdrs, data, proxy)
        if plain:
            req.remember(url, method, headers, (u, m, hdrs, request, head, proxy))
        rec = self.performance.begin(url, initiator_type)
        tao = TaoCheck(self.origin, u.origin) if self.origin is not None else None
        return _Fetch(rec, u, m, hdrs, data, t, ns, tao, intended_start, request, head, proxy)

    async def _follow(self, ex: _Fetch, conn: HTTP11Connection, stream: bool) -> HTTP11Connection:
        """Given the first hop's response, run the Timing-Allow-Origin check and follow
        redirects until the final response: complete for ``fetch()``, its head for
        ``stream()``. Returns the connection holding it."""
        hops = 0
        stamps = ex.stamps
        while True:
            if hops:
                conn = await self._exchange(ex, True if stream else self._deliver)
            head = conn.head
            if ex.tao is not None:
                ex.tao.on_response(ex.url.origin, [v.decode("latin-1") for v in conn.fields.get(b"timing-allow-origin", ())])
            if not conn.deliver_head or stream and not (self.follow_redirects and head.status_code in REDIRECT_STATUSES):
                return conn
            location = conn.fields.get(b"location")
            if not location:  # a redirect status without a Location is the final response
                if not stream:
                    conn.collect_rest()
                    await self._wait_ready(conn)
                return conn
            location = location[0].decode("latin-1")
            hops += 1
            if hops > self.max_redirects:
                raise TooManyRedirects(f"more than {self.max_redirects} redirects")
            try:
                target = resolve_location(ex.url, location)
            except InvalidURL as exc:
                raise ProtocolError(f"redirect with an invalid Location {location!r}: {exc}") from exc
            scheme = target.split(":", 1)[0].lower()
            if scheme not in ("http", "https"):
                raise RedirectSchemeError(f"redirect to a non-http(s) URL: {target[:200]!r}")
            try:
                new_url = parse_url(target)
            except InvalidURL as exc:
                raise ProtocolError(f"redirect with an invalid Location {location!r}: {exc}") from exc
            ex.history.append((head.status_code, ex.url.href))
            # redirectEnd: the redirect's head has arrived; its body is never waited
            # for (SPEC §3): the connection is reused only if the body is complete.
            redirect_end = conn.end_ns if conn.state is DONE else conn.head_end
            self._release(ex, conn, conn.state is DONE)
            stamps[_REDIRECT_END] = redirect_end
            stamps[_REDIRECT_START] = stamps[_START]
            ex.method, ex.body, ex.headers = redirect_request(ex.method, ex.body, ex.headers, head.status_code,
                                                              ex.url.origin, new_url.origin)
            if ex.tao is not None:
                ex.tao.on_redirect(ex.url.origin, new_url.origin)
            ex.go_to(new_url, self._proxies.select(new_url) if self._proxies is not None else None)
            try:
                ex.request, ex.head = self._req.event(new_url, ex.method, ex.headers, ex.body, ex.proxy)
            except InvalidRequest as exc:
                raise ProtocolError(f"cannot follow the redirect: {exc}") from exc
            for slot in HOP_STAMPS:
                stamps[slot] = 0
            stamps[_FETCH] = max(_now(), redirect_end)

    @staticmethod
    async def _wait_ready(conn: HTTP11Connection) -> None:
        while not conn.ready:
            if conn.error is not None:
                raise conn.error
            await conn.wait()
        if conn.error is not None and not conn.deliver_head:
            raise conn.error

    async def _exchange(self, ex: _Fetch, deliver) -> HTTP11Connection:
        """One request on a pooled or new connection until the response is ready,
        retrying an idempotent request once when a reused connection proves dead."""
        retried = False
        stamps = ex.stamps
        ns = ex.ns
        while True:
            conn = None if retried else self._pool.take_idle(ex.origin)
            if conn is not None:
                _mark_reused(ex)
            else:
                conn = await self._connection(ex, not retried)
            ex.conn = conn
            try:
                if conn.start(stamps, ex.request, ex.head, ex.body, deliver, ns[1], ex.total_due,
                              self.limits.max_body_bytes):
                    await conn.drain(ns[2])
                while not conn.ready:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait()
                if conn.error is not None and not conn.deliver_head:
                    raise conn.error
            except (ConnectionReset, ProtocolError) as exc:
                # No retry once close() ran: the connection died because we closed it.
                # An HTTP/2 stream the server refused unprocessed is retried whatever
                # its method (RFC 9113 §8.7).
                if not retried and not self._closed and (
                        type(exc) is StreamRefused
                        or ex.reused and not conn.response_started and ex.method in IDEMPOTENT):
                    ex.sent += conn.bytes_out
                    ex.received += conn.bytes_in
                    conn.broken = True
                    self._pool.release(conn, conn.finish_cycle())
                    ex.conn = None
                    for slot in HOP_STAMPS:
                        stamps[slot] = 0
                    retried = True
                    continue
                raise
            return conn

    async def _connection(self, ex: _Fetch, allow_idle: bool) -> HTTP11Connection:
        """Wait for a pool slot (or an idle connection) and open a new connection,
        each wait bounded by a deadline on this task."""
        loop = self._loop
        task = asyncio.current_task()
        ns = ex.ns
        cancelling = task.cancelling()
        self._connecting.add(task)
        try:
            if self._pool.try_reserve(ex.origin):
                conn = None
            else:
                conn = await self._bounded(self._pool.acquire(ex.origin, allow_idle), task,
                                           _after(ns[3]), ex, lambda: PoolTimeout(
                                           f"no connection slot within {ex.timeout.pool:g} s "
                                           f"(max_connections={self.limits.max_connections}, "
                                           f"max_connections_per_origin={self.limits.max_connections_per_origin})"))
            if self._closed:
                if conn is not None:
                    self._pool.release(conn, False)
                raise ClientClosed("this Client was closed")
            stamps = ex.stamps
            if conn is not None:  # an idle connection came back while we waited
                _mark_reused(ex)
                return conn
            ex.reused = False
            u = ex.url
            ctx = None
            if ex.https:
                if self._ssl is None:
                    self._ssl = _ssl_context(self._verify, self._alpn)
                ctx = self._ssl
            conn = HTTP11Connection(loop, ex.origin, self.limits.max_header_bytes, self._sweep,
                                    self._make_decoder)
            try:
                stamps[_DNS_START] = now = _now()
                connect_due = now + ns[0] if ns[0] else 0
                await self._bounded(self._open(conn, stamps, u, ctx, ex), task, connect_due, ex,
                                    lambda: ConnectTimeout(
                                        f"connecting to {u.host} took over {ex.timeout.connect:g} s"))
            except BaseException:
                conn.close()
                self._pool.cancel_reservation(ex.origin)
                raise
        except asyncio.CancelledError:
            if task in self._interrupted:
                self._interrupted.discard(task)
                if task.uncancel() <= cancelling:  # only close() cancelled us
                    raise ClientClosed("this Client was closed") from None
            raise
        finally:
            self._connecting.discard(task)
        if conn.alpn == "h2":
            from ._http2 import H2Connection

            conn = H2Connection.adopt(conn, self._sweep)
        conn = self._pool.opened(conn)
        if self._closed:
            self._pool.release(conn, False)
            raise ClientClosed("this Client was closed")
        return conn

    async def _open(self, conn, stamps, u, ctx, ex: _Fetch) -> None:
        proxy = ex.proxy
        if proxy is None:
            addrs = await self._resolve(u.host, u.port)
            stamps[_DNS_END] = _now()
            await open_connection(self._loop, conn, stamps, addrs, u.host, ctx)
            return
        # Through a proxy: DNS is the proxy's name; TLS (inside the tunnel) is the origin's.
        addrs = await self._resolve(proxy.host, proxy.port)
        stamps[_DNS_END] = _now()
        tunnel = Tunnel(proxy, u.authority, self.limits.max_header_bytes) if ctx is not None else None
        try:
            await open_connection(self._loop, conn, stamps, addrs, u.host, ctx, tunnel)
        except ProxyError:
            raise
        except ConnectError as exc:
            raise ProxyError(f"cannot connect to proxy {proxy.display}: {exc}") from exc
        finally:
            if tunnel is not None:
                ex.sent += tunnel.sent
                ex.received += tunnel.received

    async def _bounded(self, coro, task, phase_due: int, ex: _Fetch, timeout_error):
        """Await ``coro`` with the sweep cancelling it at the earlier of ``phase_due``
        and the fetch's total deadline (ns, 0 = none): the timeout is
        ``timeout_error()``, or TotalTimeout when the total deadline passed well before
        the phase's (within the sweep's granularity, the phase says more)."""
        total = ex.total_due
        due = total if total and (not phase_due or total < phase_due) else phase_due
        if not due:
            return await coro
        deadline = TaskDeadline(task, due)
        self._sweep.watch(deadline, due, self._loop)
        try:
            return await coro
        except asyncio.CancelledError:
            if deadline.settle():
                if total and (not phase_due or phase_due - total > GRANULARITY_NS):
                    raise TotalTimeout(f"the fetch's total deadline ({ex.timeout.total:g} s) passed") from None
                raise timeout_error() from None
            raise
        finally:
            self._sweep.unwatch(deadline)

    async def _resolve(self, host: str, port: int):
        try:
            addrs = await self._resolver.resolve(host, port)
        except (FetchError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise DNSError(f"cannot resolve {host!r}: {exc}") from exc
        if not addrs or not all(isinstance(a, tuple) and len(a) == 2 for a in addrs):
            raise DNSError(f"resolver returned no usable addresses for {host!r}: {addrs!r}")
        return addrs

    def _release(self, ex: _Fetch, conn: HTTP11Connection, complete: bool) -> None:
        ex.sent += conn.bytes_out
        ex.received += conn.bytes_in
        ex.conn = None
        self._pool.release(conn, complete and conn.finish_cycle())

    def _finish(self, ex: _Fetch, conn: HTTP11Connection, complete: bool, decoder=None):
        """Record the successful entry and give the connection back."""
        stamps = ex.stamps
        stamps[_RESPONSE_END] = conn.end_ns if complete and conn.end_ns else _now()
        head = conn.head
        fields = conn.fields
        encoded = conn.encoded
        decoder = decoder if decoder is not None else conn.decoder
        decoded = decoder.decoded if decoder is not None else encoded
        protocol = conn.alpn or ("http/1.0" if head.http_version == b"1.0" else "http/1.1")
        reused = ex.reused
        self._release(ex, conn, complete)
        ex.finished = True
        return ex.rec.finish_response(
            head.status_code, encoded, decoded, protocol,
            content_type_attribute(_field(fields, b"content-type")) if b"content-type" in fields else "",
            content_encoding_attribute(fields.get(b"content-encoding")), _field(fields, b"server-timing"),
            conn.id, reused, conn.remote_address, conn.tls_version, ex.sent, ex.received, ex.intended_start,
            ex.tao is None or ex.tao.passed, ex.proxy.display if ex.proxy is not None else "")

    def _fail(self, ex: _Fetch, exc: BaseException) -> BaseException:
        """Record the network-error entry for ``exc`` and return what to raise."""
        conn = ex.conn
        if conn is not None:
            conn.broken = True
            self._release(ex, conn, False)
        if ex.finished:
            return exc
        err = _translate(exc)
        if isinstance(err, asyncio.CancelledError):
            kind, message = "cancelled", "the fetch was cancelled"
        elif isinstance(err, ClientClosed):  # close() while this fetch was in flight
            kind, message = "cancelled", "the client was closed during the fetch"
        elif isinstance(err, FetchError):
            kind, message = err.kind, str(err)
        else:  # an engine bug: still account for the fetch, then let it surface
            kind, message = "protocol", f"internal error: {exc!r}"
        ex.finished = True
        entry = ex.rec.finish(error=kind, error_message=message, bytes_sent=ex.sent,
                              bytes_received=ex.received, intended_start=ex.intended_start,
                              proxy=ex.proxy.display if ex.proxy is not None else "")
        if isinstance(err, (FetchError, ClientClosed)):
            err.url = ex.rec.name
            err.entry = entry
        return err


def _mark_reused(ex: _Fetch) -> None:
    """The stamps of a reused connection (SPEC §3): DNS and connect equal to
    fetch_start; secure_connection_start too for TLS, 0 for plain HTTP."""
    stamps = ex.stamps
    fetch = stamps[_FETCH]
    stamps[_DNS_START] = stamps[_DNS_END] = stamps[_CONNECT_START] = stamps[_CONNECT_END] = fetch
    stamps[_SECURE] = fetch if ex.https else 0
    ex.reused = True


def _after(ns: int) -> int:
    """The C-clock time ``ns`` from now (0: no such deadline)."""
    return _now() + ns if ns else 0


def _decoder(limits: Limits, content_encoding: str) -> Decoder:
    return Decoder(content_encoding, limits.max_decompressed_bytes, limits.max_decompression_ratio)


def _translate(exc: BaseException) -> BaseException:
    """Foreign exceptions become restiming's; ours and cancellation pass through."""
    if isinstance(exc, _OURS):
        return exc
    if isinstance(exc, TimeoutError):
        return TotalTimeout(f"timed out: {exc}")
    if isinstance(exc, OSError):  # ssl.SSLError included
        return translate_io(exc, "fetching")
    if isinstance(exc, h11.ProtocolError):
        return ProtocolError(f"HTTP protocol error: {exc}")
    return exc
