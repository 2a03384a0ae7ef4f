"""The protocol layer: one HTTP/1.1 connection, h11 driven from the transport callbacks.

``HTTP11Connection`` is the asyncio protocol of its socket. ``start`` writes a whole
request inline (``request_start`` before the write, ``request_end`` once the bytes
are in the kernel); ``data_received`` stamps each chunk's arrival with the C clock,
feeds h11 and consumes every event it can at once, so the fetch waiting on this
connection is woken once per response (``fetch()``), or once for its head and then
per body chunk it waits for (``stream()``, and a redirect, whose body is never
waited for). First-byte stamps are the arrival of the chunk where each head began,
not the time anyone looked. The head is measured on the wire here (h11's own limit
can be bypassed by one large read), unread streamed bytes past ``HIGH_WATER`` pause
reading, and deadlines are data (``due``/``expire``) for the client's sweep.
h11 and socket errors become restiming's here and wake the waiter.
https://w3c.github.io/resource-timing/#attribute-descriptions
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time

import h11

from restiming._binding import lib
from restiming._exceptions import ConnectionReset, HeaderTooLarge, ProtocolError, RestimingError
from restiming._fields import SLOT

from ._exchange import BODY, DONE, HEAD, IDLE, WANTED, Exchange
from ._network import translate_io

__all__ = ["HTTP11Connection", "HIGH_WATER", "LOW_WATER", "COALESCE", "IDLE", "HEAD", "BODY", "DONE", "WANTED"]

#: Unread bytes of a streamed body at which the connection stops reading the socket.
HIGH_WATER = 1 << 20
#: ... and below which it reads again.
LOW_WATER = 1 << 18
#: Buffered chunks smaller than this are merged with the next one.
COALESCE = 1 << 14

_now = lib.rt_now_ns
_ids = itertools.count(1)
_NOT_INTERIM = (100, 101)
_REQUEST_START, _REQUEST_END = SLOT["request_start"], SLOT["request_end"]
_INTERIM = SLOT["first_interim_response_start"]
_NEED_DATA, _PAUSED = h11.NEED_DATA, h11.PAUSED
_Data, _EndOfMessage, _Response = h11.Data, h11.EndOfMessage, h11.Response
_EOM = h11.EndOfMessage()
# h11 keeps (raw name, lower-case name, value) triples and the unparsed bytes; reading
# them directly spares a copy per response. Both exist since h11 0.10; if a release
# drops them, the public accessors are used instead.
_HAS_FULL_ITEMS = hasattr(h11.Request(method="GET", target="/", headers=[("Host", "a")]).headers, "_full_items")
_HAS_BUFFER = hasattr(h11.Connection(h11.CLIENT), "_receive_buffer")
# Sending a cached request head: h11's state machine takes the events (so it knows
# what it sent, e.g. HEAD, and checks the framing) without serializing them again.
_HAS_PROCESS_EVENT = hasattr(h11.Connection, "_process_event")


def _pending(conn: h11.Connection) -> int:
    return len(conn._receive_buffer) if _HAS_BUFFER else len(conn.trailing_data[0])


class HTTP11Connection(Exchange, asyncio.Protocol):
    """One keep-alive connection (an ``asyncio.Protocol``), one exchange at a time."""

    multiplexed = False  # the pool's cue: HTTP/2 connections (``_http2``) say True

    __slots__ = ("id", "origin", "transport", "h11", "remote_address", "tls_version", "alpn", "idle_since",
                 "requests", "closed", "eof", "_head_ns", "_head_fed", "_max_head", "early_ns", "paused")

    def __init__(self, loop, origin: tuple, max_header_bytes: int, sweep, make_decoder) -> None:
        self._init_exchange(loop, sweep, make_decoder)
        self.id = next(_ids) & 0xFFFFFFFF
        self.origin = origin
        self.transport = None
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self.remote_address = ""
        self.tls_version = ""
        self.alpn: str | None = None
        self.idle_since = 0.0
        self.requests = 0
        self.closed = False   # the transport is gone
        self.eof = False
        self._head_ns = 0
        self._head_fed = 0
        self._max_head = max_header_bytes
        self.early_ns = 0
        self.paused = False

    # ------------------------------------------------------------ transport side
    def connection_made(self, transport) -> None:
        self.transport = transport
        # high=0: pause_writing fires whenever bytes wait in user space, so the
        # writer learns exactly when the request is in the kernel (request_end).
        transport.set_write_buffer_limits(high=0, low=0)

    def data_received(self, data: bytes) -> None:
        now = _now()
        self.bytes_in += len(data)
        state = self.state
        if state is IDLE or state is DONE:
            if self.requests or state is DONE:
                self.broken = True  # bytes nobody asked for: never reuse
                return
            # A server that speaks first, before our request went out: kept for the
            # exchange, whose stamps are clamped to its request (SPEC §3).
            self.early_ns = self.early_ns or now
            self._feed(data)
            return
        if self.error is not None:
            self.broken = True  # the exchange already failed: nothing more is parsed
            return
        self.response_started = True
        if self.reading and self.read_ns:
            self.read_due = now + self.read_ns
        if state is HEAD:
            if not self._head_ns:
                self._head_ns = now
            self._head_fed += len(data)
        if self._feed(data):
            self._process(now)

    def eof_received(self):
        self.eof = True
        if (self.state is HEAD or self.state is BODY) and self.error is None:
            if self._feed(b""):
                self._process(_now())
        else:
            self.broken = True
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.broken = True
        state = self.state
        if state is HEAD or state is BODY:
            if self.error is not None:
                pass  # the exchange already failed: its buffered bytes are not parsed again
            elif exc is not None:
                self.fail(translate_io(exc, "reading the response"))
            elif not self.eof:
                self.eof = True
                if self._feed(b""):
                    self._process(_now())
            if self.state is not DONE:
                self.fail(ConnectionReset("the connection closed during the exchange"))
        elif self._writing:
            self.fail(translate_io(exc, "sending the request") if exc is not None
                       else ConnectionReset("the connection closed before the request was sent"))
        self.wake()

    def pause_writing(self) -> None:
        pass  # the writer watches the buffer size; resume_writing wakes it

    def resume_writing(self) -> None:
        self.wake()

    # -------------------------------------------------------------- parsing
    def _feed(self, data: bytes) -> bool:
        try:
            self.h11.receive_data(data)
        except h11.RemoteProtocolError as exc:  # data after a closed connection
            self.fail(ProtocolError(f"malformed response: {exc}"), exc)
            return False
        return True

    def _process(self, now: int) -> None:
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.fail(self._parse_error(exc), exc)
                return
            kind = type(event)
            if kind is _Data:
                if self.collect:
                    self.collect_body(event.data)
                else:
                    self._buffer(event.data)
                if self.error is not None:
                    return
            elif kind is _EndOfMessage:
                self.end_body(now)
                return
            elif event is _NEED_DATA:
                if self.state is HEAD and self._head_fed > self._max_head:
                    self.fail(HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}"))
                elif self.deliver_head and self.state is BODY:
                    self.wake()
                return
            elif kind is _Response:
                self._on_head(event, now)
                if self.error is not None:
                    return
            elif kind is h11.InformationalResponse:
                start = self._head_ns
                if not self._head_done(now):
                    return
                if event.status_code not in _NOT_INTERIM and not self.stamps[_INTERIM]:
                    self.stamps[_INTERIM] = start
            elif kind is h11.ConnectionClosed:
                if self.state is HEAD:
                    self.fail(ConnectionReset("the server closed the connection without a response"))
                else:
                    self.fail(ProtocolError("the connection closed before the body was complete"))
                return
            else:  # PAUSED cannot happen mid-exchange; anything else is a bug in the peer
                self.fail(ProtocolError(f"unexpected {kind.__name__} in the response"))
                return

    def _parse_error(self, exc: h11.RemoteProtocolError) -> RestimingError:
        if self.state is HEAD:
            if self._head_fed > self._max_head:
                return HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}")
            if not self.response_started and self.eof:
                return ConnectionReset("the server closed the connection without a response")
        elif self.eof:
            return ProtocolError("the connection closed before the body was complete")
        return ProtocolError(f"malformed response: {exc}")

    def _head_done(self, now: int) -> bool:
        """A head was parsed: check its size on the wire; the next head starts in
        this chunk if h11 still holds unparsed bytes, else in the next one."""
        pending = _pending(self.h11)
        if self._head_fed - pending > self._max_head:
            self.fail(HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}"))
            return False
        self._head_fed = pending
        self._head_ns = now if pending else 0
        return True

    def _on_head(self, event, now: int) -> None:
        start = self._head_ns
        if not self._head_done(now):
            return
        fields: dict = {}
        if _HAS_FULL_ITEMS:
            for _raw, name, value in event.headers._full_items:
                if name in WANTED:
                    fields.setdefault(name, []).append(value)
        else:
            for name, value in event.headers:
                if name in WANTED:
                    fields.setdefault(name, []).append(value)
        if self.on_head(event, fields, event.status_code, start, now):
            # stream(), or a redirect the client will follow: the fetch is woken at
            # the head (at the end of this data_received); the body is buffered.
            self.chunks = collections.deque()

    def _buffer(self, data: bytes) -> None:
        """Buffered mode: keep a body chunk for ``next_chunk``, pausing the socket
        above ``HIGH_WATER`` unread bytes."""
        n = len(data)
        self.encoded += n
        chunks = self.chunks
        if chunks and n < COALESCE and len(chunks[-1]) < COALESCE:
            # Tiny chunks (a peer writing a few bytes at a time) are merged, so the
            # buffer's memory is its bytes, not an object per chunk.
            tail = chunks[-1]
            if type(tail) is bytes:
                tail = chunks[-1] = bytearray(tail)
            tail += data
        else:
            chunks.append(data)
        self.buffered += n
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # -------------------------------------------------------------- exchange
    def start(self, stamps, request: h11.Request, head: bytes | None, body: bytes, deliver_head,
              read_ns: int, total_due: int, max_body: int) -> int:
        """Send one request inline. Returns the bytes still buffered in user space
        (the caller drains them before stamping request_end), or 0 when the whole
        request is in the kernel and request_end is stamped."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionReset("the connection closed before the request was sent")
        self.requests += 1
        self.state = HEAD
        self.reset_exchange(stamps, deliver_head, read_ns, total_due, max_body)
        self._head_ns = 0
        self._head_fed = 0
        conn = self.h11
        try:
            if head is not None and _HAS_PROCESS_EVENT:
                conn._process_event(h11.CLIENT, request)
                if body:
                    data = head + conn.send(h11.Data(data=body)) + conn.send(_EOM)
                else:
                    conn._process_event(h11.CLIENT, _EOM)
                    data = head
            else:
                data = conn.send(request)
                if body:
                    data += conn.send(h11.Data(data=body))
                data += conn.send(_EOM)
        except h11.LocalProtocolError as exc:
            self.broken = True
            self.state = IDLE
            raise ProtocolError(f"cannot send this request: {exc}") from exc
        stamps[_REQUEST_START] = _now()
        transport = self.transport
        transport.write(data)
        self.bytes_out = len(data)
        pending = transport.get_write_buffer_size()
        now = _now()
        if not pending:
            stamps[_REQUEST_END] = now
        self.watch_read(now)
        if self.early_ns:
            # Bytes that came before the request: their stamps are this moment, never
            # earlier than request_start (stamps are taken in a fixed order).
            self.early_ns = 0
            self.response_started = True
            self._head_ns = now
            self._head_fed = _pending(conn)
            self._process(now)
        return pending

    async def drain(self, write_ns: int) -> None:
        """Wait until the request is in the kernel, then stamp request_end."""
        transport = self.transport
        self._writing = True
        if write_ns:
            self.write_due = _now() + write_ns
            self.sweep.watch(self, self.due(), self.loop)
        try:
            while transport.get_write_buffer_size() and not self.closed and self.error is None:
                await self.wait()
        finally:
            self._writing = False
            self.write_due = 0
        if self.error is not None and not self.ready and self.state is not DONE:
            raise self.error
        if self.closed and transport.get_write_buffer_size():
            raise ConnectionReset("the connection closed before the request was sent")
        self.stamps[_REQUEST_END] = _now()

    async def next_chunk(self) -> bytes | None:
        """Buffered mode (stream, redirect): the next encoded body chunk, or ``None``
        at the end of the body."""
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks.popleft()
                self.buffered -= len(data)
                if type(data) is bytearray:
                    data = bytes(data)
                if self.paused and self.buffered < LOW_WATER and not self.closed:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if not await self.wait_for_bytes():
                return None

    def collect_rest(self) -> None:
        """Switch a head-delivered exchange to collecting its body (a redirect status
        the client does not follow after all)."""
        self.deliver_head = False
        self.ready = self.state is DONE
        self.start_collecting()
        chunks, self.chunks = self.chunks, None
        self.buffered = 0
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        self.replay_into_body(chunks)

    # ------------------------------------------------------------- lifecycle
    def is_idle_usable(self, keepalive_expiry: float, now: float) -> bool:
        """An idle connection is reusable if it has not expired and the peer has
        neither closed it nor sent unsolicited bytes."""
        return (not self.broken and not self.closed and not self.eof
                and now - self.idle_since < keepalive_expiry)

    def finish_cycle(self) -> bool:
        """After an exchange: True if the connection can carry another request."""
        self.stamps = None
        self.waiter = None
        self.reading = False
        if self.broken or self.closed or self.state is not DONE:
            self.sweep.unwatch(self)
            return False
        self.state = IDLE
        self.chunks = None
        self.body = None
        self.decoder = None
        conn = self.h11
        if _pending(conn):
            # Bytes after the response (a body on a HEAD answer, an unsolicited second
            # response): h11 would parse them as the answer to our next request.
            return False
        try:
            conn.start_next_cycle()  # refuses unless both sides are DONE
        except h11.LocalProtocolError:
            return False
        self.idle_since = time.monotonic()
        return True

    def close(self) -> None:
        self.broken = True
        self.sweep.unwatch(self)
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
