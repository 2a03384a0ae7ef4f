"""aiohttp trace config: one Resource Timing entry per aiohttp request, built from the
signals aiohttp emits (``pip install restiming[aiohttp]``).

Strategy: ``trace_config()`` returns an ``aiohttp.TraceConfig`` whose callbacks keep one
``Recorder`` per request (aiohttp gives each request its own trace context) and stamp it
with restiming's C clock as the signals arrive; redirects are folded into that one entry
as SPEC §3 says. aiohttp has fewer signals than the engine has stamps, so every field
is either observed, derived by the rule written below, or left 0. Nothing is invented.
https://docs.aiohttp.org/en/stable/tracing_reference.html
https://w3c.github.io/resource-timing/#attribute-descriptions

Field by field (aiohttp 3.9+):

- ``start_time``, ``fetch_start``: ``on_request_start`` (once per request). After a
  redirect, ``fetch_start`` is stamped at ``on_request_redirect``, when the next hop starts.
- ``redirect_start``/``redirect_end``: ``start_time`` / ``on_request_redirect`` of the
  last redirect, which aiohttp sends once the redirect's head is parsed.
- ``domain_lookup_start``/``end``: ``on_dns_resolvehost_start``/``end``. On
  ``on_dns_cache_hit`` both are the hit (a lookup shared with a concurrent request is a
  "hit" too: the wait for it is then counted in connect). For an IP-literal host aiohttp
  resolves nothing and sends no DNS signal: both are ``on_connection_create_start``.
- ``connect_start``: derived, equal to ``domain_lookup_end`` (aiohttp has no signal
  between the lookup and the TCP connect; nothing runs in between).
- ``connect_end``: ``on_connection_create_end`` (TCP connect plus TLS handshake).
- ``secure_connection_start``: **0 on a new connection** — aiohttp does not signal the
  start of the TLS handshake, so TLS time is inside connect. On a reused TLS connection
  it equals ``fetch_start`` as SPEC §3 says.
- Reused connection (``on_connection_reuseconn``): DNS and connect stamps equal
  ``fetch_start`` (SPEC §3). Waiting for a free connection
  (``on_connection_queued_start``/``end``) shows as the gap before ``domain_lookup_start``
  or ``request_start``, as in the engine.
- ``request_start``: ``on_request_headers_sent``, which aiohttp sends just before it
  writes the head. ``request_end`` (extension): **0** — aiohttp signals each body chunk
  before writing it and nothing after the last one.
- ``first_interim_response_start``: **0** — aiohttp does not surface 1xx responses.
- ``final_response_headers_start`` and so ``response_start``: **not the first byte**:
  ``on_request_end``, sent once the final head is parsed (aio-libs/aiohttp#7386). On a
  head that arrives in one read the difference is the parsing time.
- ``response_end``: when aiohttp's payload parser reaches the end of the body
  (``StreamReader.on_eof``, inside the protocol's ``data_received``, whether or not the
  caller has read it yet); 0 receive time if the body was complete with the head. If the
  response is released or closed before the end of its body, the entry is recorded then,
  like the engine's closed stream. A response that is never read nor released records
  nothing.
- Sizes: ``decoded_body_size`` is what aiohttp's payload parser delivered
  (``content.total_bytes``; with ``auto_decompress=False`` that is the encoded size).
  ``encoded_body_size`` equals it without Content-Encoding, is Content-Length with one,
  and is **0** for a compressed body without Content-Length (not observable).
  ``bytes_sent``/``bytes_received`` (extensions): **0**, not observable.
- ``next_hop_protocol`` (from the response version), ``content_type``,
  ``content_encoding``, ``server_timing``, ``response_status``, ``remote_address``,
  ``tls_version``, ``connection_reused``: observed from the response and its transport.
- Errors (``on_request_exception``): one network-error entry with the ``error`` kind of
  ``_KINDS`` below. A ``ClientResponseError`` from ``raise_for_status`` is a response,
  not an error (SPEC §3): recorded with its status, ``response_start`` at the exception.
- With ``origin``, the Timing-Allow-Origin check runs on every response of the chain.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from yarl import URL

import restiming
from restiming._engine._decoding import content_encoding_attribute
from restiming._mime import content_type_attribute
from restiming._tao import TaoCheck  # pure: no I/O, no clock
from restiming.clock import now_ns

__all__ = ["trace_config", "error_kind"]

# Stamps of one hop; a redirect or a retry on a new connection starts them afresh.
_HOP_STAMPS = ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
               "secure_connection_start", "request_start", "request_end",
               "first_interim_response_start", "final_response_headers_start", "response_end")
_REUSE_STAMPS = ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end")

# aiohttp exception -> entry ``error`` kind; most specific first (first match wins).
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncio.CancelledError, "cancelled"),
    (aiohttp.TooManyRedirects, "too_many_redirects"),
    (aiohttp.NonHttpUrlRedirectClientError, "redirect_scheme"),
    (aiohttp.InvalidUrlRedirectClientError, "protocol"),
    (aiohttp.ClientConnectorDNSError, "dns"),
    (aiohttp.ClientConnectorCertificateError, "tls"),
    (aiohttp.ClientConnectorSSLError, "tls"),
    (aiohttp.ClientSSLError, "tls"),
    (aiohttp.ServerFingerprintMismatch, "tls"),
    (ssl.SSLError, "tls"),
    (aiohttp.ConnectionTimeoutError, "timeout"),
    (aiohttp.ServerTimeoutError, "timeout"),
    (asyncio.TimeoutError, "timeout"),
    (aiohttp.ClientConnectorError, "connect"),
    (aiohttp.ServerDisconnectedError, "reset"),
    (ConnectionError, "reset"),
    (aiohttp.ClientPayloadError, "protocol"),
    (aiohttp.ClientResponseError, "protocol"),
    (aiohttp.ClientOSError, "reset"),
)


def error_kind(exc: BaseException) -> str:
    """The entry ``error`` kind for an exception aiohttp raised for a request."""
    for exc_type, kind in _KINDS:
        if isinstance(exc, exc_type):
            return kind
    return "protocol"


def _origin(url: URL) -> str:
    port = url.port
    default = 443 if url.scheme == "https" else 80
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host
    return f"{url.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


class _Request:
    """Recording state of one aiohttp request (all its hops)."""

    __slots__ = ("rec", "url", "tao", "reused", "done", "create_ns", "dns", "response", "protocol",
                 "remote", "tls_version")

    def __init__(self, perf: restiming.Performance, url: URL, origin: str | None) -> None:
        self.rec = perf.begin(str(url), "fetch")
        self.url = url
        self.tao = TaoCheck(origin, _origin(url)) if origin is not None else None
        self.reused = False
        self.done = False
        self.create_ns = 0
        self.dns = False
        self.response = None
        self.protocol = ""
        self.remote = ""
        self.tls_version = ""

    def new_hop(self) -> None:
        rec = self.rec
        for phase in _HOP_STAMPS:
            rec.set(phase, 0)
        self.reused = False
        self.dns = False

    # ------------------------------------------------------------- finishing
    def finish_response(self, response, *, complete: bool) -> None:
        if self.done:
            return
        self.done = True
        rec = self.rec
        content = response.content
        if not complete:
            exc = content.exception() if content is not None else None
            if exc is not None and not isinstance(exc, aiohttp.ClientConnectionError):
                self.finish_error(exc, force=True)
                return
        decoded = getattr(content, "total_bytes", 0) or 0
        headers = response.headers
        encoding = headers.get("Content-Encoding", "")
        encoded = decoded
        if encoding and encoding.strip().lower() != "identity":
            length = headers.get("Content-Length", "")
            encoded = int(length) if length.isdigit() else 0
        tao_passed = True
        if self.tao is not None:
            tao_passed = self.tao.passed
        rec.finish(
            response_status=response.status,
            encoded_body_size=encoded,
            decoded_body_size=decoded,
            next_hop_protocol=self.protocol,
            content_type=content_type_attribute(", ".join(headers.getall("Content-Type", ()))),
            content_encoding=content_encoding_attribute(
                [v.encode("latin-1", "replace") for v in headers.getall("Content-Encoding", ())]),
            server_timing=", ".join(headers.getall("Server-Timing", ())),
            connection_reused=self.reused,
            remote_address=self.remote,
            tls_version=self.tls_version,
            timing_allow_passed=tao_passed,
        )

    def finish_error(self, exc: BaseException, *, force: bool = False) -> None:
        if self.done and not force:
            return
        self.done = True
        message = str(exc) or type(exc).__name__
        self.rec.finish(error=error_kind(exc), error_message=message)


class _Tracer:
    """The TraceConfig callbacks, bound to one timeline."""

    def __init__(self, performance: restiming.Performance, origin: str | None) -> None:
        self.performance = performance
        self.origin = origin

    @staticmethod
    def _state(ctx) -> _Request | None:
        return getattr(ctx, "restiming", None)

    async def on_request_start(self, session, ctx, params) -> None:
        ctx.restiming = _Request(self.performance, params.url, self.origin)

    async def on_connection_create_start(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None:
            return
        if st.rec.get("request_start"):  # aiohttp retries on a new connection
            st.new_hop()
            st.rec.stamp("fetch_start")
        st.create_ns = now_ns()
        st.reused = False

    async def on_dns_resolvehost_start(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is not None:
            st.dns = True
            st.rec.stamp("domain_lookup_start")

    async def on_dns_resolvehost_end(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is not None:
            st.rec.stamp("domain_lookup_end")

    async def on_dns_cache_hit(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is not None:
            st.dns = True
            st.rec.stamp("domain_lookup_start")
            st.rec.set("domain_lookup_end", st.rec.get("domain_lookup_start"))

    async def on_connection_create_end(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None:
            return
        rec = st.rec
        if not st.dns:  # IP literal: nothing resolved
            rec.set("domain_lookup_start", st.create_ns)
            rec.set("domain_lookup_end", st.create_ns)
        rec.set("connect_start", rec.get("domain_lookup_end"))
        rec.stamp("connect_end")

    async def on_connection_reuseconn(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None:
            return
        rec = st.rec
        if rec.get("request_start"):  # a retry, on another pooled connection
            st.new_hop()
            rec.stamp("fetch_start")
        st.reused = True
        fetch = rec.get("fetch_start")
        for phase in _REUSE_STAMPS:
            rec.set(phase, fetch)
        rec.set("secure_connection_start", fetch if st.url.scheme == "https" else 0)

    async def on_request_headers_sent(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None:
            return
        st.url = params.url
        st.rec.stamp("request_start")

    async def on_request_redirect(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None:
            return
        rec = st.rec
        rec.stamp("redirect_end")
        rec.set("redirect_start", rec.get("start_time"))
        response = params.response
        if st.tao is not None:
            st.tao.on_response(_origin(response.url), response.headers.getall("Timing-Allow-Origin", []))
            location = response.headers.get("Location") or response.headers.get("URI")
            if location:
                try:
                    target = response.url.join(URL(location))
                    st.tao.on_redirect(_origin(response.url), _origin(target))
                    st.url = target
                except ValueError:
                    pass  # aiohttp raises InvalidUrlRedirectClientError next
        st.new_hop()
        rec.stamp("fetch_start")

    async def on_request_end(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None or st.done:
            return
        rec = st.rec
        rec.stamp("final_response_headers_start")
        response = params.response
        if st.tao is not None:
            st.tao.on_response(_origin(response.url), response.headers.getall("Timing-Allow-Origin", []))
        version = response.version
        st.protocol = "http/1.0" if version is not None and tuple(version) == (1, 0) else "http/1.1"
        connection = response.connection
        transport = connection.transport if connection is not None else None
        if transport is not None:
            peer = transport.get_extra_info("peername")
            if peer:
                st.remote = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                st.tls_version = sslobj.version() or ""
        content = response.content
        if connection is None or content is None or content.is_eof():
            # the body was complete with the head: no receive time
            rec.set("response_end", rec.get("final_response_headers_start"))
            st.finish_response(response, complete=True)
            return

        def at_eof() -> None:
            if not st.done:
                rec.stamp("response_end")
                st.finish_response(response, complete=True)

        def at_release() -> None:
            if not st.done:
                complete = content.is_eof()
                rec.stamp("response_end")
                st.finish_response(response, complete=complete)

        content.on_eof(at_eof)
        connection.add_callback(at_release)

    async def on_request_exception(self, session, ctx, params) -> None:
        st = self._state(ctx)
        if st is None or st.done:
            return
        exc = params.exception
        if isinstance(exc, aiohttp.ClientResponseError) and not isinstance(exc, aiohttp.TooManyRedirects) \
                and exc.status >= 400 and exc.headers is not None:
            # raise_for_status: an HTTP error status is a response (SPEC §3), not a network error
            st.rec.stamp("final_response_headers_start")
            st.done = True
            st.rec.finish(response_status=exc.status, content_type=content_type_attribute(exc.headers.get("Content-Type")),
                          connection_reused=st.reused, next_hop_protocol="http/1.1",
                          timing_allow_passed=st.tao.passed if st.tao is not None else True)
            return
        st.finish_error(exc)


def trace_config(performance: restiming.Performance | None = None, *,
                 origin: str | None = None) -> aiohttp.TraceConfig:
    """An ``aiohttp.TraceConfig`` recording one entry per request into ``performance``
    (default ``restiming.performance``). ``origin`` (``"scheme://host[:port]"``, default
    the timeline's origin) turns on the Timing-Allow-Origin check.

    ``aiohttp.ClientSession(trace_configs=[trace_config(perf)])``.
    """
    if performance is None:
        performance = restiming.performance
    if not isinstance(performance, restiming.Performance):
        raise TypeError(f"performance must be a restiming.Performance, not {type(performance).__name__}")
    if origin is None:
        origin = performance.origin
    tracer = _Tracer(performance, origin)
    config = aiohttp.TraceConfig()
    for signal in ("on_request_start", "on_connection_create_start", "on_connection_create_end",
                   "on_dns_resolvehost_start", "on_dns_resolvehost_end", "on_dns_cache_hit",
                   "on_connection_reuseconn", "on_request_headers_sent", "on_request_redirect",
                   "on_request_end", "on_request_exception"):
        getattr(config, signal).append(getattr(tracer, signal))
    return config
