"""httpx transport: every request an ``httpx.AsyncClient`` sends goes through restiming's
engine and leaves one Resource Timing entry (``pip install restiming[httpx]``).

Strategy: ``AsyncTransport`` owns one ``restiming.Client`` with its own redirect
following off (httpx follows redirects itself, so each hop is one request and one
entry here). A request becomes ``client.stream()``: the response head is handed to
httpx as soon as it arrives and the body streams through, so httpx's ``stream=True``,
``aiter_bytes()`` and ``aclose()`` keep their meaning; the entry is recorded when the
body ends or the response is closed (SPEC §3 "Streaming") and then lands in
``response.extensions["resource_timing"]`` (``None`` before that).
httpx's per-request timeouts (``request.extensions["timeout"]``) become a
``restiming.Timeout``; restiming's typed errors become the matching httpx exceptions,
the restiming one (with its ``entry``) kept as ``__cause__``.

Known difference from httpx's own transport: restiming decodes gzip/deflate (br, zstd
when installed) itself, as its entries' decoded sizes require, so for those codings
the response reaches httpx already decoded, without its Content-Encoding and
Content-Length fields. A request body is read in full before sending (the engine
sends bytes, not streamed uploads).
https://www.python-httpx.org/advanced/transports/
"""

from __future__ import annotations


import httpx

import restiming
from restiming._engine._decoding import decodes  # what the engine delivers decoded

__all__ = ["AsyncTransport"]

# restiming error -> httpx error, most specific first (the first isinstance match wins).
_ERRORS: tuple[tuple[type[BaseException], type[httpx.HTTPError]], ...] = (
    (restiming.ConnectTimeout, httpx.ConnectTimeout),
    (restiming.ReadTimeout, httpx.ReadTimeout),
    (restiming.WriteTimeout, httpx.WriteTimeout),
    (restiming.PoolTimeout, httpx.PoolTimeout),
    (restiming.TimeoutError, httpx.TimeoutException),  # the total deadline
    (restiming.DNSError, httpx.ConnectError),
    (restiming.TLSError, httpx.ConnectError),
    (restiming.ConnectError, httpx.ConnectError),
    (restiming.DecompressionLimit, httpx.DecodingError),
    (restiming.ProtocolError, httpx.RemoteProtocolError),
    (restiming.LimitExceeded, httpx.RemoteProtocolError),
    (restiming.InvalidURL, httpx.UnsupportedProtocol),
    (restiming.InvalidHeader, httpx.LocalProtocolError),
    (restiming.FetchError, httpx.TransportError),
    (restiming.ClientClosed, httpx.TransportError),
)
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
# Request fields the engine frames itself once the body is buffered.
_FRAMING = {b"transfer-encoding"}
_RESPONSE_DECODED_DROP = {b"content-encoding", b"content-length"}


def map_error(exc: BaseException, request: httpx.Request | None = None) -> BaseException:
    """The httpx exception matching restiming error ``exc`` (``exc`` itself if none does)."""
    if isinstance(exc, restiming.ConnectionReset):
        # httpx says RemoteProtocolError when the server hung up, ReadError for an OS reset.
        kind = httpx.ReadError if isinstance(exc.__cause__, OSError) else httpx.RemoteProtocolError
        return kind(str(exc), request=request)
    for ours, theirs in _ERRORS:
        if isinstance(exc, ours):
            return theirs(str(exc), request=request)
    return exc


def _seconds(value):
    # httpx allows 0 ("fail at once"); restiming wants a positive number.
    return None if value is None else max(float(value), 1e-6)


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one restiming stream, for httpx; records the entry on end or close."""

    def __init__(self, context, response: restiming.StreamResponse, request: httpx.Request) -> None:
        self._context = context
        self._response = response
        self._request = request
        self._closed = False
        self.httpx_response: httpx.Response | None = None

    def _publish(self) -> None:
        if self.httpx_response is not None and self._response.entry is not None:
            self.httpx_response.extensions["resource_timing"] = self._response.entry

    async def __aiter__(self):
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except restiming.RestimingError as exc:
            self._publish_error(exc)
            raise map_error(exc, self._request) from exc
        self._publish()

    def _publish_error(self, exc: BaseException) -> None:
        entry = getattr(exc, "entry", None)
        if self.httpx_response is not None and entry is not None:
            self.httpx_response.extensions["resource_timing"] = entry

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._context.__aexit__(None, None, None)
        self._publish()


class AsyncTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` performing every request with restiming's engine.

    ``performance``: the timeline entries go to (default ``restiming.performance``).
    ``client_options``: any ``restiming.Client`` keyword (``verify``, ``limits``,
    ``resolver``, ``origin``, ``timeout``...) except ``follow_redirects``, which is off
    here because httpx follows redirects itself. ``timeout`` is used for requests that
    carry no httpx timeout extension, and its ``total`` deadline applies to every
    request (httpx has no total deadline); by default there is none.
    """

    def __init__(self, performance: restiming.Performance | None = None, **client_options) -> None:
        for name in ("follow_redirects", "max_redirects"):
            if name in client_options:
                raise TypeError(f"AsyncTransport does not take {name}=: httpx follows redirects itself")
        timeout = restiming.Timeout.coerce(client_options.pop("timeout", restiming.Timeout(total=None)))
        self._default_timeout = timeout
        self.client = restiming.Client(performance, follow_redirects=False, timeout=timeout, **client_options)
        self.performance = self.client.performance

    def _timeout(self, request: httpx.Request) -> restiming.Timeout:
        given = request.extensions.get("timeout")
        if not given:
            return self._default_timeout
        default = self._default_timeout
        values = {k: _seconds(given[k]) if k in given else getattr(default, k) for k in _TIMEOUT_KEYS}
        return restiming.Timeout(total=default.total, **values)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(n, v) for n, v in request.headers.raw if n.lower() not in _FRAMING]
        initiator = request.extensions.get("initiator_type", "fetch")
        context = self.client.stream(str(request.url), method=request.method, headers=headers,
                                     body=body or None, timeout=self._timeout(request),
                                     initiator_type=initiator)
        try:
            response = await context.__aenter__()
        except restiming.RestimingError as exc:
            raise map_error(exc, request) from exc
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers.items()]
        if decodes(response.headers.get("content-encoding")):
            raw = [(n, v) for n, v in raw if n.lower() not in _RESPONSE_DECODED_DROP]
        stream = _ResponseStream(context, response, request)
        result = httpx.Response(
            status_code=response.status,
            headers=raw,
            stream=stream,
            extensions={
                "http_version": response.http_version.encode("ascii"),
                "reason_phrase": response.reason.encode("latin-1"),
                "resource_timing": None,
            },
        )
        stream.httpx_response = result
        return result

    async def aclose(self) -> None:
        await self.client.close()
