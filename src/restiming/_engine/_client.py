"""``restiming.Client``: fetches over the engine's own sockets, one entry per fetch.

A fetch is a chain of hops (redirects). Each hop acquires a pooled connection or
opens one (stamping DNS, connect, TLS), sends the request and reads the response
head through h11 (stamping request and response starts from chunk arrival
times). Redirects follow Fetch's method and header rules; the Timing-Allow-Origin
check runs on every response of the chain. Any failure records one opaque entry
with the ``error`` kind and raises the typed exception; ``OSError``, ``ssl`` and
``h11`` errors are translated at this boundary, never leaked.
https://fetch.spec.whatwg.org/#http-redirect-fetch
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import ssl

import h11

from restiming._exceptions import (
    ClientClosed,
    ConnectionReset,
    ConnectTimeout,
    DNSError,
    FetchError,
    InvalidURL,
    LimitExceeded,
    ProtocolError,
    RedirectSchemeError,
    TooManyRedirects,
    TotalTimeout,
)
from restiming._exceptions import TimeoutError as RTTimeoutError
from restiming._headers import normalize_headers, split_list
from restiming._tao import TaoCheck
from restiming._timeline import Performance
from restiming._url import normalize_origin, parse_url, resolve_location

from ._config import Limits, Timeout, bound
from ._decoding import Decoder, supported_encodings
from ._dns import CachingResolver
from ._http11 import HTTP11Connection
from ._models import Response
from ._network import open_stream, translate_io
from ._pool import Pool

__all__ = ["Client"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
_NORMALIZED_METHODS = {m: m.encode() for m in ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH")}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BODY_HEADERS = {b"content-encoding", b"content-language", b"content-location", b"content-type",
                 b"content-length", b"transfer-encoding"}
_CREDENTIAL_HEADERS = {b"authorization", b"cookie", b"proxy-authorization"}
# Stamps that describe one hop's connection and exchange; a new hop or a retry resets them.
HOP_STAMPS = ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
              "secure_connection_start", "request_start", "request_end",
              "first_interim_response_start", "final_response_headers_start", "response_end")
_REDIRECT_BODY_LIMIT = 65536
# Raised as they are (no foreign cause to chain).
_OURS = (FetchError, ClientClosed, asyncio.CancelledError)
USER_AGENT = b"restiming/0.1"
# Load generators fetch the same few URLs again and again; parsing one costs more than
# the rest of _begin. parse_url is pure, so a parsed URL is reused (short URLs only).
_URL_CACHE_SIZE = 256
_URL_CACHE_MAX_LENGTH = 2048
_REQUEST_CACHE_SIZE = 256
_REQUEST_CACHE_MAX_BYTES = 4096


def _ssl_context(verify) -> ssl.SSLContext:
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
            raise ValueError(f"verify: CA file {os.fspath(verify)!r} does not exist")
        try:
            ctx = ssl.create_default_context(cafile=os.fspath(verify))
        except ssl.SSLError as exc:
            raise ValueError(f"verify: cannot load CA file {os.fspath(verify)!r}: {exc}") from exc
    else:
        raise TypeError("verify must be True, False, a CA file path or an ssl.SSLContext")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


_MIME_ESSENCE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _essence(content_type: str | None) -> str:
    # Pure, and servers repeat the same few values: short ones are memoized.
    if content_type and len(content_type) <= 256:
        return _essence_memo(content_type)
    return _essence_of(content_type)


def _essence_of(content_type: str | None) -> str:
    """Fetch's "extract a MIME type", reduced to the essence Resource Timing exposes:
    of the comma-separated values, the last that parses wins (``*/*`` is skipped).
    https://fetch.spec.whatwg.org/#concept-header-extract-mime-type"""
    if not content_type:
        return ""
    essence = ""
    for value in split_list(content_type):
        candidate = value.split(";", 1)[0].strip(" \t\r\n").lower()
        if candidate != "*/*" and _MIME_ESSENCE.match(candidate):
            essence = candidate
    return essence


_essence_memo = functools.lru_cache(maxsize=256)(_essence_of)


class _Exchange:
    """State of one fetch across its hops."""

    __slots__ = ("rec", "url", "method", "headers", "body", "timeout", "deadline", "conn", "reused",
                 "tao", "sent", "received", "finished", "intended_start", "history", "loop")

    def __init__(self, rec, url, method, headers, body, timeout, deadline, tao, intended_start, loop):
        self.loop = loop
        self.rec = rec
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.deadline = deadline
        self.conn = None
        self.reused = False
        self.tao = tao
        self.sent = 0
        self.received = 0
        self.finished = False
        self.intended_start = intended_start
        self.history: list[tuple[int, str]] = []  # (status, url) of each redirect followed


class Client:
    """An HTTP/1.1 client that records a Resource Timing entry for every fetch.

    See SPEC §2 for the parameters. Use as ``async with Client() as client``; a
    client belongs to the event loop it first fetches on.
    """

    def __init__(self, performance: Performance | None = None, *, origin: str | None = None,
                 timeout: Timeout | float | None = 30.0, verify=True, follow_redirects: bool = True,
                 max_redirects: int = 20, resolver=None, limits: Limits | None = None) -> None:
        if performance is None:
            from restiming import performance as default

            performance = default
        if not isinstance(performance, Performance):
            raise TypeError(f"performance must be a restiming.Performance, not {type(performance).__name__}")
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError(f"max_redirects must be an int >= 0, got {max_redirects!r}")
        if resolver is not None and not callable(getattr(resolver, "resolve", None)):
            raise TypeError("resolver must have an async resolve(host, port) method")
        limits = Limits() if limits is None else limits
        if not isinstance(limits, Limits):
            raise TypeError("limits must be a restiming.Limits")
        self.performance = performance
        self.origin = normalize_origin(origin) if origin is not None else performance.origin
        self.timeout = Timeout.coerce(timeout)
        self.follow_redirects = bool(follow_redirects)
        self.max_redirects = max_redirects
        self.limits = limits
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        if verify is not True:
            self._ssl = _ssl_context(verify)  # validate now: bad input fails at construction
        self._resolver = resolver if resolver is not None else CachingResolver()
        self._pool = Pool(limits)
        self._accept_encoding = ", ".join(supported_encodings()).encode()
        self._requests: dict[tuple, h11.Request] = {}  # see _request
        self._urls: dict[str, object] = {}  # parse_url results (pure), see _URL_CACHE_SIZE
        self._closed = False
        # Tasks opening a connection: no pooled connection exists yet for close() to
        # abort, so close() cancels them (as asyncio.timeout does) and they raise
        # ClientClosed instead of waiting out their connect timeout.
        self._connecting: set = set()
        self._interrupted: set = set()

    async def __aenter__(self) -> "Client":
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

    @property
    def open_connections(self) -> int:
        return self._pool.open_connections

    # ---------------------------------------------------------------- public
    async def fetch(self, url: str, *, method: str = "GET", headers=None, body=None,
                    initiator_type: str = "fetch", timeout=None, intended_start: int | None = None) -> Response:
        """Fetch ``url`` and read the whole body. The entry is in the timeline before
        this returns or raises; ``response.entry`` is it."""
        ex = self._begin(url, method, headers, body, initiator_type, timeout, intended_start)
        try:
            head, decoder = await self._chain(ex)
            conn = ex.conn
            parts = []
            limit = self.limits.max_body_bytes
            while True:
                chunk = await conn.read_body_chunk(ex.timeout.read)
                if chunk is None:
                    break
                if decoder.encoded + len(chunk) > limit:
                    raise LimitExceeded(f"response body exceeds max_body_bytes={limit}")
                parts.extend(decoder.feed(chunk))
            parts.extend(decoder.flush())
            entry = self._finish(ex, head, decoder, complete=True)
            return Response(head.status, head.reason, head.headers, b"".join(parts),
                            ex.url.href, entry, head.http_version, ex.history)
        except BaseException as exc:
            raise self._fail(ex, exc) from (None if isinstance(exc, _OURS) else exc)

    def stream(self, url: str, *, method: str = "GET", headers=None, body=None,
               initiator_type: str = "fetch", timeout=None, intended_start: int | None = None):
        """``async with client.stream(url) as response``: the body as async chunks.
        The entry is recorded when the body ends or the stream closes."""
        from ._stream import StreamContext

        return StreamContext(self, (url, method, headers, body, initiator_type, timeout, intended_start))

    # -------------------------------------------------------------- internals
    def _begin(self, url, method, headers, body, initiator_type, timeout, intended_start) -> _Exchange:
        if self._closed:
            raise ClientClosed("this Client was closed")
        u = self._urls.get(url) if type(url) is str else None
        if u is None:
            u = parse_url(url)  # InvalidURL: before any socket, no entry
            if len(url) <= _URL_CACHE_MAX_LENGTH:
                if len(self._urls) >= _URL_CACHE_SIZE:
                    self._urls.clear()
                self._urls[url] = u
        if not isinstance(method, str) or not _TOKEN.match(method):
            raise ValueError(f"method must be an HTTP token, got {method!r}")
        m = _NORMALIZED_METHODS.get(method.upper()) or method.encode("ascii")
        hdrs = normalize_headers(headers)
        if body is None:
            data = b""
        elif isinstance(body, str):
            data = body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        else:
            raise TypeError(f"body must be bytes, str or None, not {type(body).__name__}")
        t = self.timeout if timeout is None else Timeout.coerce(timeout)
        loop = asyncio.get_running_loop()
        rec = self.performance.begin(url, initiator_type)
        deadline = None if t.total is None else loop.time() + t.total
        tao = TaoCheck(self.origin, u.origin)
        return _Exchange(rec, u, m, hdrs, data, t, deadline, tao, intended_start, loop)

    def _request(self, ex: _Exchange) -> h11.Request:
        """The h11 request event for this hop. A load generator sends the same head
        over and over, and building the event validates every field each time, so
        events (immutable) are kept per (target, authority, method, body length,
        caller headers); heads over 4 KiB are not kept."""
        u = ex.url
        key = (u.target, u.authority, ex.method, len(ex.body), *ex.headers)
        event = self._requests.get(key)
        if event is None:
            headers = self._request_headers(ex)
            try:
                event = h11.Request(method=ex.method, target=u.target.encode("ascii"), headers=headers)
            except h11.LocalProtocolError as exc:
                raise ProtocolError(f"cannot send this request: {exc}") from exc
            if len(u.target) + sum(len(n) + len(v) for n, v in headers) <= _REQUEST_CACHE_MAX_BYTES:
                if len(self._requests) >= _REQUEST_CACHE_SIZE:
                    self._requests.clear()
                self._requests[key] = event
        return event

    def _request_headers(self, ex: _Exchange) -> list:
        names = {n.lower() for n, _ in ex.headers}
        out = []
        if b"host" not in names:
            out.append((b"Host", ex.url.authority.encode("ascii")))
        out.extend(ex.headers)
        if b"user-agent" not in names:
            out.append((b"User-Agent", USER_AGENT))
        if b"accept" not in names:
            out.append((b"Accept", b"*/*"))
        if b"accept-encoding" not in names:
            out.append((b"Accept-Encoding", self._accept_encoding))
        if b"content-length" not in names and b"transfer-encoding" not in names:
            if ex.body or ex.method in (b"POST", b"PUT", b"PATCH"):
                out.append((b"Content-Length", str(len(ex.body)).encode()))
        return out

    @staticmethod
    def _bound(ex: _Exchange, seconds: float | None) -> float | None:
        return bound(seconds, ex.deadline, ex.loop.time())

    async def _resolve(self, host: str, port: int, timeout: float | None):
        try:
            async with asyncio.timeout(timeout):
                addrs = await self._resolver.resolve(host, port)
        except TimeoutError as exc:
            if isinstance(exc, FetchError):
                raise
            raise ConnectTimeout(f"resolving {host!r} took over {timeout:g} s") from exc
        except (FetchError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise DNSError(f"cannot resolve {host!r}: {exc}") from exc
        if not addrs or not all(isinstance(a, tuple) and len(a) == 2 for a in addrs):
            raise DNSError(f"resolver returned no usable addresses for {host!r}: {addrs!r}")
        return addrs

    async def _connection(self, ex: _Exchange, allow_idle: bool) -> HTTP11Connection:
        u, rec = ex.url, ex.rec
        origin = (u.scheme, u.host, u.port)
        conn = self._pool.take_idle(origin) if allow_idle else None
        if conn is None:
            conn = await self._pool.acquire(origin, self._bound(ex, ex.timeout.pool), allow_idle)
        if self._closed:
            raise ClientClosed("this Client was closed")
        if conn is not None:
            rec.mark_reused(u.scheme == "https")
            ex.reused = True
            return conn
        ex.reused = False
        task = asyncio.current_task()
        cancelling = task.cancelling()
        self._connecting.add(task)
        try:
            connect_budget = self._bound(ex, ex.timeout.connect)
            connect_deadline = None if connect_budget is None else ex.loop.time() + connect_budget
            rec.stamp("domain_lookup_start")
            addrs = await self._resolve(u.host, u.port, connect_budget)
            rec.stamp("domain_lookup_end")
            if connect_deadline is not None:  # one budget for DNS, TCP and TLS together
                connect_budget = max(connect_deadline - ex.loop.time(), 0.001)
            ctx = None
            if u.scheme == "https":
                if self._ssl is None:
                    self._ssl = _ssl_context(self._verify)
                ctx = self._ssl
            stream = await open_stream(rec, addrs, u.host, ctx, connect_budget)
        except asyncio.CancelledError:
            self._pool.cancel_reservation(origin)
            if task in self._interrupted:
                self._interrupted.discard(task)
                if task.uncancel() <= cancelling:  # only close() cancelled us
                    raise ClientClosed("this Client was closed") from None
            raise
        except BaseException:
            self._pool.cancel_reservation(origin)
            raise
        finally:
            self._connecting.discard(task)
        conn = HTTP11Connection(origin, stream, self.limits.max_header_bytes)
        self._pool.opened(conn)
        if self._closed:
            self._pool.release(conn, False)
            raise ClientClosed("this Client was closed")
        return conn

    async def _hop(self, ex: _Exchange):
        """One request/response head on a pooled or new connection, with the retry
        of an idempotent request once when a reused connection proves dead."""
        retried = False
        while True:
            conn = await self._connection(ex, allow_idle=not retried)
            ex.conn = conn
            conn.deadline = ex.deadline
            try:
                await conn.send_request(ex.rec, self._request(ex), ex.body, self._bound(ex, ex.timeout.write))
                head = await conn.receive_head(ex.rec, ex.timeout.read)
            except (ConnectionReset, ProtocolError):
                # No retry once close() ran: the connection died because we closed it.
                if ex.reused and not retried and not conn.response_started and ex.method in IDEMPOTENT \
                        and not self._closed:
                    ex.sent += conn.bytes_sent
                    ex.received += conn.bytes_received
                    self._pool.release(conn, False)
                    ex.conn = None
                    ex.rec.clear(*HOP_STAMPS)
                    retried = True
                    continue
                raise
            return head

    async def _chain(self, ex: _Exchange):
        """Run hops until a final response head; returns (head, decoder)."""
        rec = ex.rec
        hops = 0
        while True:
            head = await self._hop(ex)
            fields = head.headers
            ex.tao.on_response(ex.url.origin, fields.get_all("timing-allow-origin"))
            location = None
            if self.follow_redirects and head.status in REDIRECT_STATUSES:
                values = fields.get_all("location")
                location = values[0] if values else None
            if location is None:
                encoding = fields.get("content-encoding", "")
                decoder = Decoder(encoding, self.limits.max_decompressed_bytes,
                                  self.limits.max_decompression_ratio)
                return head, decoder
            hops += 1
            if hops > self.max_redirects:
                raise TooManyRedirects(f"more than {self.max_redirects} redirects")
            try:
                target = resolve_location(ex.url, location)
            except InvalidURL as exc:
                raise ProtocolError(f"redirect with an invalid Location {location!r}: {exc}") from None
            scheme = target.split(":", 1)[0].lower()
            if scheme not in ("http", "https"):
                raise RedirectSchemeError(f"redirect to a non-http(s) URL: {target[:200]!r}")
            try:
                new_url = parse_url(target)
            except InvalidURL as exc:
                raise ProtocolError(f"redirect with an invalid Location {location!r}: {exc}") from None
            ex.history.append((head.status, ex.url.href))
            await self._discard_body(ex)
            rec.stamp("redirect_end")
            rec.copy("redirect_start", "start_time")
            self._redirect_request(ex, head.status, new_url)
            ex.tao.on_redirect(ex.url.origin, new_url.origin)
            ex.url = new_url
            rec.clear(*HOP_STAMPS)
            rec.stamp("fetch_start")

    async def _discard_body(self, ex: _Exchange) -> None:
        """Read a redirect's body to reuse its connection; a large one closes it."""
        conn = ex.conn
        total = 0
        while True:
            chunk = await conn.read_body_chunk(ex.timeout.read)
            if chunk is None:
                break
            total += len(chunk)
            if total > _REDIRECT_BODY_LIMIT:
                conn.broken = True
                break
        ex.sent += conn.bytes_sent
        ex.received += conn.bytes_received
        self._pool.release(conn, conn.finish_cycle())
        ex.conn = None

    @staticmethod
    def _redirect_request(ex: _Exchange, status: int, new_url) -> None:
        """Fetch's HTTP-redirect fetch: method and header rewriting."""
        if (status in (301, 302) and ex.method == b"POST") or (status == 303 and ex.method not in (b"GET", b"HEAD")):
            ex.method = b"GET"
            ex.body = b""
            ex.headers = [(n, v) for n, v in ex.headers if n.lower() not in _BODY_HEADERS]
        if new_url.origin != ex.url.origin:
            ex.headers = [(n, v) for n, v in ex.headers
                          if n.lower() not in _CREDENTIAL_HEADERS and n.lower() != b"host"]

    def _finish(self, ex: _Exchange, head, decoder: Decoder, *, complete: bool):
        """Record the successful entry and give the connection back."""
        conn = ex.conn
        rec = ex.rec
        if complete and conn.last_ns:
            rec.set("response_end", conn.last_ns)
        else:
            rec.stamp("response_end")
        sent = ex.sent + conn.bytes_sent
        received = ex.received + conn.bytes_received
        reusable = complete and conn.finish_cycle()
        self._pool.release(conn, reusable)
        ex.conn = None
        get = head.headers.get
        protocol = conn.stream.alpn or ("http/1.0" if head.http_version == "HTTP/1.0" else "http/1.1")
        ex.finished = True
        return rec.finish(
            response_status=head.status,
            encoded_body_size=decoder.encoded,
            decoded_body_size=decoder.decoded,
            next_hop_protocol=protocol,
            content_type=_essence(get("content-type")),
            content_encoding=(get("content-encoding") or "").lower(),
            server_timing=get("server-timing") or "",
            connection_id=conn.id,
            connection_reused=ex.reused,
            remote_address=conn.stream.remote_address,
            tls_version=conn.stream.tls_version,
            bytes_sent=sent,
            bytes_received=received,
            intended_start=ex.intended_start,
            timing_allow_passed=ex.tao.passed,
        )

    def _fail(self, ex: _Exchange, exc: BaseException) -> BaseException:
        """Record the network-error entry for ``exc`` and return what to raise."""
        conn = ex.conn
        if conn is not None:
            ex.sent += conn.bytes_sent
            ex.received += conn.bytes_received
            self._pool.release(conn, False)
            ex.conn = None
        if ex.finished:
            return exc
        err = _translate(exc)
        if isinstance(err, RTTimeoutError) and not isinstance(err, TotalTimeout) and ex.deadline is not None \
                and ex.loop.time() >= ex.deadline - 0.002:
            err = TotalTimeout(f"the fetch's total deadline ({ex.timeout.total:g} s) passed")
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
                              bytes_received=ex.received, intended_start=ex.intended_start)
        if isinstance(err, (FetchError, ClientClosed)):
            err.url = ex.rec.name
            err.entry = entry
        return err


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
