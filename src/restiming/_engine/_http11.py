"""HTTP/1.1 over one ``Stream``, driven by h11 in both directions.

Sends one request, reads interim and final response heads, then the body, and
stamps request_start, request_end, first_interim_response_start,
final_response_headers_start and response_end from the arrival stamps of the
chunks the bytes came in. The response head is measured on the wire by this
module (h11's own limit can be bypassed by a single large read). h11 errors
become ``ProtocolError`` here.
https://w3c.github.io/resource-timing/#attribute-descriptions
"""

from __future__ import annotations

import itertools
import time

import h11

from restiming._exceptions import ConnectionReset, HeaderTooLarge, ProtocolError

from ._config import bound
from ._models import Headers

__all__ = ["HTTP11Connection", "ResponseHead"]

_ids = itertools.count(1)
_NOT_INTERIM = (100, 101)


class ResponseHead:
    __slots__ = ("status", "reason", "headers", "http_version")

    def __init__(self, status: int, reason: str, headers: Headers, http_version: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.http_version = http_version


class HTTP11Connection:
    """One keep-alive connection. One request at a time (no pipelining)."""

    __slots__ = ("id", "origin", "stream", "protocol", "h11", "idle_since", "requests",
                 "bytes_sent", "_bytes_in_mark", "_start_ns", "_last_ns", "_fed", "_max_head",
                 "response_started", "broken", "deadline")

    def __init__(self, origin: tuple, stream, max_header_bytes: int) -> None:
        self.id = next(_ids) & 0xFFFFFFFF
        self.origin = origin
        self.stream = stream
        self.protocol = stream.protocol
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self.idle_since = time.monotonic()
        self.requests = 0
        self.bytes_sent = 0
        self._bytes_in_mark = 0
        self._start_ns = 0
        self._last_ns = 0
        self._fed = 0
        self._max_head = max_header_bytes
        self.response_started = False
        self.broken = False
        self.deadline: float | None = None  # loop time of the fetch's total deadline

    # -------------------------------------------------------------- liveness
    def is_idle_usable(self, keepalive_expiry: float, now: float) -> bool:
        """An idle connection is reusable if it has not expired and the peer has
        neither closed it nor sent unsolicited bytes."""
        p = self.protocol
        return (not self.broken and not p.closed and not p._eof and not p.has_data()
                and self.h11.our_state is h11.IDLE and now - self.idle_since < keepalive_expiry)

    @property
    def bytes_received(self) -> int:
        return self.protocol.bytes_in - self._bytes_in_mark

    # --------------------------------------------------------------- request
    async def send_request(self, rec, request: h11.Request, body: bytes, write_timeout: float | None) -> None:
        self.requests += 1
        self.response_started = False
        self.bytes_sent = 0
        self._bytes_in_mark = self.protocol.bytes_in
        self._start_ns = 0
        self._fed = 0
        try:
            head = self.h11.send(request)
            tail = self.h11.send(h11.Data(data=body)) if body else b""
            tail += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            self.broken = True
            raise ProtocolError(f"cannot send this request: {exc}") from exc
        data = head + tail
        rec.stamp("request_start")
        protocol = self.protocol
        protocol.write(data)
        self.bytes_sent = len(data)
        if protocol.transport.get_write_buffer_size():
            await protocol.drain(write_timeout)
        rec.stamp("request_end")

    # -------------------------------------------------------------- response
    async def _next_event(self, read_timeout: float | None):
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.broken = True
                raise ProtocolError(f"malformed response: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            timeout = bound(read_timeout, self.deadline, self.protocol.loop.time())
            ns, data = await self.protocol.read(timeout)
            if data:
                self.response_started = True
                if not self._start_ns:
                    self._start_ns = ns
                self._last_ns = ns
                self._fed += len(data)
            else:
                self._last_ns = ns
            try:
                conn.receive_data(data)
            except h11.RemoteProtocolError as exc:  # data after a closed connection
                self.broken = True
                raise ProtocolError(f"malformed response: {exc}") from exc

    def _head_done(self) -> int:
        """Bytes of the head just parsed; the next head starts in the last chunk if
        h11 still holds unparsed bytes, else in the next chunk."""
        pending = len(self.h11.trailing_data[0])
        size = self._fed - pending
        self._fed = pending
        self._start_ns = self._last_ns if pending else 0
        return size

    def _check_head(self, size: int) -> None:
        # Counted here on the wire: h11's own limit is skipped when one read
        # brings a whole oversized head at once.
        if size > self._max_head:
            self.broken = True
            raise HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}")

    async def receive_head(self, rec, read_timeout: float | None) -> ResponseHead:
        while True:
            self._check_head(self._fed)
            try:
                event = await self._next_event(read_timeout)
            except ProtocolError:
                if self._fed > self._max_head:
                    raise HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}") from None
                if not self.response_started and self.protocol.at_eof:
                    raise ConnectionReset("the server closed the connection without a response") from None
                raise
            if isinstance(event, h11.InformationalResponse):
                start = self._start_ns
                self._check_head(self._head_done())
                if event.status_code not in _NOT_INTERIM and not rec.get("first_interim_response_start"):
                    rec.set("first_interim_response_start", start)
                continue
            if isinstance(event, h11.Response):
                start = self._start_ns
                self._check_head(self._head_done())
                rec.set("final_response_headers_start", start)
                headers = Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()])
                return ResponseHead(event.status_code, event.reason.decode("latin-1"), headers,
                                    "HTTP/" + event.http_version.decode("ascii"))
            if isinstance(event, h11.ConnectionClosed):
                self.broken = True
                raise ConnectionReset("the server closed the connection without a response")
            raise ProtocolError(f"unexpected {type(event).__name__} before the response head")

    async def read_body_chunk(self, read_timeout: float | None) -> bytes | None:
        """The next encoded body chunk (framing removed), or ``None`` at the end of
        the body; ``last_ns`` is then the arrival of its last byte."""
        event = await self._next_event(read_timeout)
        if type(event) is h11.Data:
            return event.data
        if type(event) is h11.EndOfMessage:
            return None
        self.broken = True
        if isinstance(event, h11.ConnectionClosed):
            raise ProtocolError("the connection closed before the body was complete")
        raise ProtocolError(f"unexpected {type(event).__name__} in the response body")

    @property
    def last_ns(self) -> int:
        return self._last_ns

    def finish_cycle(self) -> bool:
        """After a complete exchange: True if the connection can carry another request."""
        conn = self.h11
        if self.broken or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        if conn.trailing_data[0]:
            # Bytes after the response (a body on a HEAD answer, an unsolicited second
            # response): h11 would parse them as the answer to our next request.
            return False
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        self.idle_since = time.monotonic()
        return True

    def close(self) -> None:
        self.broken = True
        self.protocol.abort()

