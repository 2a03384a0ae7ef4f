"""Every exception restiming raises, in one place.

One hierarchy rooted at :class:`RestimingError`. Foreign exceptions (``OSError``,
``ssl.SSLError``, ``h11.ProtocolError``) are translated once, at the engine boundary,
with ``raise ... from exc`` so the cause stays visible. Each network error class carries
the short machine-readable ``kind`` that also lands in the entry's ``error`` extension.
"""

from __future__ import annotations

__all__ = [
    "RestimingError",
    "NativeError",
    "SharedTimelineError",
    "ClusterError",
    "InvalidURL",
    "InvalidHeader",
    "InvalidRequest",
    "FetchError",
    "DNSError",
    "ConnectError",
    "TLSError",
    "TimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "TotalTimeout",
    "ProtocolError",
    "ConnectionReset",
    "StreamReset",
    "StreamRefused",
    "ConnectionTerminated",
    "ProxyError",
    "RedirectError",
    "TooManyRedirects",
    "RedirectSchemeError",
    "LimitExceeded",
    "HeaderTooLarge",
    "DecompressionLimit",
    "ClientClosed",
]

import builtins


class RestimingError(Exception):
    """Root of every error restiming raises."""


class NativeError(RestimingError):
    """The C core returned a failure status (a bug or an exhausted OS resource)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SharedTimelineError(RestimingError):
    """A shared-memory timeline could not be created, attached or used."""


class ClusterError(RestimingError):
    """The Ray cluster of ``restiming[ray]`` could not be reached, lacks room for the
    engine actors, or failed to start them; raised before any load is sent."""


class InvalidURL(RestimingError, ValueError):
    """The URL does not parse or its scheme is not http(s); nothing was fetched."""


class InvalidHeader(RestimingError, ValueError):
    """A request header name or value is malformed (CR, LF, NUL, bad token)."""


class InvalidRequest(RestimingError, ValueError):
    """A request the engine refuses to send: a method that is not a token, headers
    whose framing contradicts itself (two Content-Lengths, a Transfer-Encoding other
    than chunked), a bad argument. Raised before any socket; nothing is recorded."""


class FetchError(RestimingError):
    """A fetch failed as a network error; an entry with ``error == kind`` was recorded.

    ``entry`` is that entry (``None`` only when no timeline recorded one).
    """

    kind = "network"

    def __init__(self, message: str, *, url: str | None = None, entry=None) -> None:
        super().__init__(message)
        self.url = url
        self.entry = entry


class DNSError(FetchError):
    kind = "dns"


class ConnectError(FetchError):
    kind = "connect"


class TLSError(FetchError):
    kind = "tls"


class TimeoutError(FetchError, builtins.TimeoutError):
    """A deadline passed. Subclasses say which one."""

    kind = "timeout"
    phase = "total"


class ConnectTimeout(TimeoutError):
    phase = "connect"


class ReadTimeout(TimeoutError):
    phase = "read"


class WriteTimeout(TimeoutError):
    phase = "write"


class PoolTimeout(TimeoutError):
    phase = "pool"


class TotalTimeout(TimeoutError):
    phase = "total"


class ProtocolError(FetchError):
    """The peer spoke malformed HTTP (status line, headers, framing, short body)."""

    kind = "protocol"


class ConnectionReset(FetchError):
    """The peer closed or reset the connection before the response was complete."""

    kind = "reset"


class StreamReset(ConnectionReset):
    """HTTP/2: the server reset the stream (RST_STREAM). ``code`` is the HTTP/2 error
    code (an int, RFC 9113 §7), ``code_name`` its name."""

    def __init__(self, message: str, *, code: int = 0, code_name: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.code_name = code_name


class StreamRefused(StreamReset):
    """HTTP/2: the server did not process the request: RST_STREAM with REFUSED_STREAM,
    a stream above a GOAWAY's last stream id, or no stream left on the connection.
    The engine retries such a request once on a new connection (RFC 9113 §8.7)."""


class ConnectionTerminated(ConnectionReset):
    """HTTP/2: the server sent GOAWAY and closed the connection before this stream's
    response was complete. ``code`` is the GOAWAY error code, ``last_stream_id`` the
    last stream the server said it processed."""

    def __init__(self, message: str, *, code: int = 0, last_stream_id: int = 0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.last_stream_id = last_stream_id


class ProxyError(ConnectError):
    """The proxy refused the tunnel or the request (``status``: its HTTP status, e.g.
    407, 403, 502; 0 when it answered no valid HTTP). The entry's kind is "connect"."""

    def __init__(self, message: str, *, status: int = 0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class RedirectError(FetchError):
    kind = "redirect"


class TooManyRedirects(RedirectError):
    kind = "too_many_redirects"


class RedirectSchemeError(RedirectError):
    kind = "redirect_scheme"


class LimitExceeded(FetchError):
    """A documented limit (header bytes, decompressed bytes) was exceeded."""

    kind = "limit"


class HeaderTooLarge(LimitExceeded):
    pass


class DecompressionLimit(LimitExceeded):
    pass


class ClientClosed(RestimingError):
    """The client was closed; no new fetch can start.

    Raised to a fetch still waiting for a connection when ``close()`` ran; that fetch
    recorded an entry with ``error == "cancelled"``, which ``entry`` holds."""

    url: str | None = None
    entry = None
