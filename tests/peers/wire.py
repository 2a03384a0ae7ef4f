"""Actions and HTTP/1.1 response builders for the scripted server (pure values, no I/O).

Strategy: a handler answers a request with a list of *actions* that the server executes
in order on the raw socket. The builders below only produce ``bytes``, so a test can
take a well-formed response apart, corrupt it, or spread it over time with ``Sleep``
between pieces; nothing here goes through h11, which would refuse malformed output.
Framing follows RFC 9112 (https://www.rfc-editor.org/rfc/rfc9112) when asked to.
"""

from __future__ import annotations

import gzip as _gzip
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "Action", "Send", "Sleep", "Close", "Reset", "Trickle", "KeepOpen", "Drain",
    "response", "interim", "chunk_body", "split_response", "timed_response",
]


class Action:
    """Base class of the steps a handler returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Write ``data`` to the socket; the step ends once the kernel has taken every byte."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Sleep(Action):
    seconds: float


@dataclass(frozen=True, slots=True)
class Close(Action):
    """Graceful close: TLS close_notify if any, then FIN (with a lingering read so the
    kernel does not turn the FIN into an RST because of unread client bytes)."""


@dataclass(frozen=True, slots=True)
class Reset(Action):
    """Abortive close: SO_LINGER 0 then close(), so the kernel sends an RST."""


@dataclass(frozen=True, slots=True)
class Trickle(Action):
    """Write ``chunk`` bytes every ``interval`` seconds. With ``data=None`` it writes
    ``filler`` forever, until the client goes away or the server stops."""

    data: bytes | None
    interval: float
    chunk: int = 1
    filler: bytes = b"x"


@dataclass(frozen=True, slots=True)
class KeepOpen(Action):
    """Never answer and never read again; the socket stays open until the server stops."""


@dataclass(frozen=True, slots=True)
class Drain(Action):
    """Keep reading (and discarding) without answering; close once the client does."""


Headers = Mapping[str | bytes, str | bytes | int] | Iterable[tuple[str | bytes, str | bytes | int]]

# Statuses whose responses never carry a body, so no Content-Length is added for them.
_NO_BODY = frozenset({204, 304})


def _b(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    # latin-1 so a test can put any byte (obs-text) into a header through a str
    return str(value).encode("latin-1")


def _pairs(headers: Headers) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(_b(name), _b(value)) for name, value in items]


def _has(pairs: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(n.lower() == name for n, _ in pairs)


def _head(status: int, reason: str | bytes | None, pairs, http_version: str) -> bytes:
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    lines = [b"HTTP/%s %d %s" % (_b(http_version), status, _b(reason))]
    lines += [name + b": " + value for name, value in pairs]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def interim(status: int = 103, headers: Headers = (), *, reason: str | None = None) -> bytes:
    """A 1xx informational head, e.g. ``interim(103, [("link", "</a.css>; rel=preload")])``."""
    return _head(status, reason, _pairs(headers), "1.1")


def chunk_body(body: bytes, chunk_size: int | None = None, *, trailers: Headers = ()) -> bytes:
    """Chunked transfer coding of ``body`` in pieces of ``chunk_size`` (one piece if None)."""
    size = chunk_size or max(len(body), 1)
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n"
    for name, value in _pairs(trailers):
        out += name + b": " + value + b"\r\n"
    return bytes(out + b"\r\n")


def response(
    status: int = 200,
    headers: Headers = (),
    body: bytes = b"",
    *,
    reason: str | bytes | None = None,
    chunked: bool = False,
    chunk_size: int | None = None,
    gzip: bool = False,
    deflate: bool = False,
    content_length: bool | int = True,
    http_version: str = "1.1",
) -> bytes:
    """A complete response as bytes.

    ``gzip``/``deflate`` compress ``body`` (deflate = zlib format, as HTTP means it) and
    add Content-Encoding. ``content_length=True`` adds the true length unless the headers
    already have one or the response is chunked; ``False`` omits it (close-delimited body:
    follow with ``Close()``); an ``int`` states that length whatever the body is.
    """
    pairs = _pairs(headers)
    if gzip:
        body = _gzip.compress(body, mtime=0)  # mtime=0: identical bytes on every run
        pairs.append((b"content-encoding", b"gzip"))
    elif deflate:
        body = zlib.compress(body)
        pairs.append((b"content-encoding", b"deflate"))
    if chunked:
        pairs.append((b"transfer-encoding", b"chunked"))
        payload = chunk_body(body, chunk_size)
    else:
        payload = body
        if content_length is True:
            if not _has(pairs, b"content-length") and status not in _NO_BODY and status >= 200:
                pairs.append((b"content-length", b"%d" % len(body)))
        elif content_length is not False:
            pairs.append((b"content-length", b"%d" % content_length))
    return _head(status, reason, pairs, http_version) + payload


def split_response(data: bytes) -> tuple[bytes, bytes]:
    """Split at the end of the first head: ``(head including CRLFCRLF, rest)``."""
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def timed_response(
    status: int = 200,
    headers: Headers = (),
    body: bytes = b"",
    *,
    head_delay: float = 0.15,
    body_delay: float = 0.15,
    **options,
) -> list[Action]:
    """``[Sleep(head_delay), Send(head), Sleep(body_delay), Send(body)]`` — the gaps a
    timing test measures (time to first byte, then body transfer)."""
    head, payload = split_response(response(status, headers, body, **options))
    actions: list[Action] = [Sleep(head_delay), Send(head)]
    if payload:
        actions += [Sleep(body_delay), Send(payload)]
    return actions
