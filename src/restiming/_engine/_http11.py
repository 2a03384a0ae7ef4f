"""The protocol layer: one HTTP/1.1 connection, h11 driven from the transport callbacks.

``HTTP11Connection`` is the asyncio protocol of its socket. ``send`` writes a whole
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
from restiming._exceptions import (
    ConnectionReset,
    HeaderTooLarge,
    LimitExceeded,
    ProtocolError,
    ReadTimeout,
    RestimingError,
    TotalTimeout,
    WriteTimeout,
)
from restiming._fields import SLOT

from ._network import translate_io

__all__ = ["HTTP11Connection", "HIGH_WATER", "LOW_WATER", "COALESCE"]

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
_INTERIM, _FINAL = SLOT["first_interim_response_start"], SLOT["final_response_headers_start"]
_NEED_DATA, _PAUSED = h11.NEED_DATA, h11.PAUSED
_Data, _EndOfMessage, _Response = h11.Data, h11.EndOfMessage, h11.Response
_EOM = h11.EndOfMessage()
# The fields an entry needs, taken from the response head in one pass.
WANTED = frozenset((b"content-type", b"content-encoding", b"server-timing", b"timing-allow-origin",
                    b"location"))
# h11 keeps (raw name, lower-case name, value) triples and the unparsed bytes; reading
# them directly spares a copy per response. Both exist since h11 0.10; if a release
# drops them, the public accessors are used instead.
_HAS_FULL_ITEMS = hasattr(h11.Request(method="GET", target="/", headers=[("Host", "a")]).headers, "_full_items")
_HAS_BUFFER = hasattr(h11.Connection(h11.CLIENT), "_receive_buffer")
# Sending a cached request head: h11's state machine takes the events (so it knows
# what it sent, e.g. HEAD, and checks the framing) without serializing them again.
_HAS_PROCESS_EVENT = hasattr(h11.Connection, "_process_event")

# Exchange states
IDLE, HEAD, BODY, DONE = 0, 1, 2, 3


def _pending(conn: h11.Connection) -> int:
    return len(conn._receive_buffer) if _HAS_BUFFER else len(conn.trailing_data[0])


class HTTP11Connection(asyncio.Protocol):
    """One keep-alive connection (an ``asyncio.Protocol``), one request at a time."""

    multiplexed = False  # the pool's cue: HTTP/2 connections (``_http2``) say True

    __slots__ = ("loop", "id", "origin", "transport", "h11", "sweep", "remote_address", "tls_version",
                 "alpn", "idle_since", "requests", "closed", "broken", "eof", "error", "waiter",
                 "state", "stamps", "bytes_in", "bytes_out", "response_started", "_head_ns", "_head_fed",
                 "_max_head", "early_ns", "head", "fields", "deliver_head", "ready", "collect",
                 "body", "encoded", "decoder", "max_body", "chunks", "buffered", "paused", "end_ns",
                 "reading", "read_ns", "read_due", "write_due", "total_due", "_writing", "make_decoder",
                 "head_end")

    def __init__(self, loop, origin: tuple, max_header_bytes: int, sweep, make_decoder) -> None:
        self.loop = loop
        self.make_decoder = make_decoder  # content-encoding value -> Decoder
        self.id = next(_ids) & 0xFFFFFFFF
        self.origin = origin
        self.transport = None
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self.sweep = sweep
        self.remote_address = ""
        self.tls_version = ""
        self.alpn: str | None = None
        self.idle_since = 0.0
        self.requests = 0
        self.closed = False   # the transport is gone
        self.broken = False   # never reuse
        self.eof = False
        self.error: BaseException | None = None
        self.waiter = None
        self.state = IDLE
        self.stamps = None
        self.bytes_out = 0
        self._max_head = max_header_bytes
        self.early_ns = 0
        self.paused = False
        self.head_end = 0
        self.reading = False
        self.read_due = 0
        self.write_due = 0
        self._writing = False
        self._reset(None, False, 0, 0, 0)

    def _reset(self, stamps, deliver_head, read_ns: int, total_due: int, max_body: int) -> None:
        """The per-exchange state, at the start of each exchange."""
        self.stamps = stamps
        self.error = None
        self.response_started = False
        self.bytes_in = 0
        self._head_ns = 0
        self._head_fed = 0
        self.head = None
        self.fields: dict | None = None
        self.deliver_head = deliver_head
        self.ready = False
        self.collect = False
        self.body = None
        self.encoded = 0
        self.decoder = None
        self.max_body = max_body
        self.chunks: collections.deque | None = None
        self.buffered = 0
        self.end_ns = 0
        self.read_ns = read_ns
        self.total_due = total_due

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
                self._fail(translate_io(exc, "reading the response"))
            elif not self.eof:
                self.eof = True
                if self._feed(b""):
                    self._process(_now())
            if self.state is not DONE:
                self._fail(ConnectionReset("the connection closed during the exchange"))
        elif self._writing:
            self._fail(translate_io(exc, "sending the request") if exc is not None
                       else ConnectionReset("the connection closed before the request was sent"))
        self._wake()

    def pause_writing(self) -> None:
        pass  # the writer watches the buffer size; resume_writing wakes it

    def resume_writing(self) -> None:
        self._wake()

    # -------------------------------------------------------------- parsing
    def _feed(self, data: bytes) -> bool:
        try:
            self.h11.receive_data(data)
        except h11.RemoteProtocolError as exc:  # data after a closed connection
            self._fail(ProtocolError(f"malformed response: {exc}"), exc)
            return False
        return True

    def _process(self, now: int) -> None:
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(self._parse_error(exc), exc)
                return
            kind = type(event)
            if kind is _Data:
                self._body(event.data)
                if self.error is not None:
                    return
            elif kind is _EndOfMessage:
                if self.decoder is not None and self.collect:
                    try:
                        for piece in self.decoder.flush():
                            self.body += piece
                    except RestimingError as exc:
                        self._fail(exc)
                        return
                self.state = DONE
                self.end_ns = now
                self.reading = False
                self.sweep.unwatch(self)
                self.ready = True
                self._wake()
                return
            elif event is _NEED_DATA:
                if self.state is HEAD and self._head_fed > self._max_head:
                    self._fail(HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}"))
                elif self.deliver_head and self.state is BODY:
                    self._wake()
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
                    self._fail(ConnectionReset("the server closed the connection without a response"))
                else:
                    self._fail(ProtocolError("the connection closed before the body was complete"))
                return
            else:  # PAUSED cannot happen mid-exchange; anything else is a bug in the peer
                self._fail(ProtocolError(f"unexpected {kind.__name__} in the response"))
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
            self._fail(HeaderTooLarge(f"response head exceeds max_header_bytes={self._max_head}"))
            return False
        self._head_fed = pending
        self._head_ns = now if pending else 0
        return True

    def _on_head(self, event, now: int) -> None:
        start = self._head_ns
        if not self._head_done(now):
            return
        self.stamps[_FINAL] = start
        self.head_end = now
        self.state = BODY
        self.head = event
        fields: dict = {}
        if _HAS_FULL_ITEMS:
            for _raw, name, value in event.headers._full_items:
                if name in WANTED:
                    fields.setdefault(name, []).append(value)
        else:
            for name, value in event.headers:
                if name in WANTED:
                    fields.setdefault(name, []).append(value)
        self.fields = fields
        if self.deliver_head is True or (self.deliver_head and event.status_code in self.deliver_head):
            # stream(), or a redirect the client will follow: wake the fetch at the
            # head; the body is buffered for whoever wants it.
            self.deliver_head = True
            self.collect = False
            self.ready = True
            self.chunks = collections.deque()
            self.reading = False
        else:
            self.deliver_head = False
            self.collect = True
            encoding = fields.get(b"content-encoding")
            if encoding:
                self.decoder = self.make_decoder(b", ".join(encoding).decode("latin-1"))
                self.body = bytearray()

    def _body(self, data: bytes) -> None:
        n = len(data)
        self.encoded += n
        if self.collect:
            if self.encoded > self.max_body:
                self._fail(LimitExceeded(f"response body exceeds max_body_bytes={self.max_body}"))
                return
            decoder = self.decoder
            if decoder is not None:
                try:
                    pieces = decoder.feed(data)
                    body = self.body
                    for piece in pieces:
                        body += piece
                except RestimingError as exc:
                    self._fail(exc)
                return
            body = self.body
            if body is None:
                self.body = data
            elif type(body) is bytes:
                body = self.body = bytearray(body)
                body += data
            else:
                body += data
            return
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

    # --------------------------------------------------------------- waking
    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _fail(self, err: BaseException, cause: BaseException | None = None) -> None:
        self.broken = True
        if self.error is None:
            if cause is not None and err.__cause__ is None:
                err.__cause__ = cause
            self.error = err
        self.reading = False
        self.sweep.unwatch(self)
        self._wake()

    def wait(self):
        """A future the next event of interest resolves (one waiter at a time)."""
        fut = self.waiter = self.loop.create_future()
        return fut

    # deadlines, for the sweep
    def due(self) -> int:
        due = 0
        for d in (self.read_due if self.reading else 0, self.write_due if self._writing else 0,
                  self.total_due):
            if d and (not due or d < due):
                due = d
        return due

    def expire(self, now: int) -> None:
        if self.total_due and now >= self.total_due:
            self._fail(TotalTimeout("the fetch's total deadline passed"))
        elif self._writing and self.write_due and now >= self.write_due:
            self._fail(WriteTimeout("the request did not drain into the socket in time"))
        elif self.reading and self.read_due and now >= self.read_due:
            self._fail(ReadTimeout(f"no response bytes for {self.read_ns / 1e9:g} s"))
        elif self.state is HEAD or self.state is BODY:
            due = self.due()
            if due:
                self.sweep.watch(self, due, self.loop)

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
        self._reset(stamps, deliver_head, read_ns, total_due, max_body)
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
        self.reading = True
        if read_ns:
            due = self.read_due = now + read_ns
            if total_due and total_due < due:
                due = total_due
            self.sweep.watch(self, due, self.loop)
        else:
            self.read_due = 0
            if total_due:
                self.sweep.watch(self, total_due, self.loop)
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
            if self.error is not None:
                raise self.error
            if self.state is DONE:
                return None
            self.reading = True
            if self.read_ns:
                self.read_due = _now() + self.read_ns
            due = self.due()
            if due:
                self.sweep.watch(self, due, self.loop)
            try:
                await self.wait()
            finally:
                self.reading = False

    def collect_rest(self) -> None:
        """Switch a head-delivered exchange to collecting its body (a redirect status
        the client does not follow after all)."""
        self.deliver_head = False
        self.collect = True
        self.ready = self.state is DONE
        encoding = self.fields.get(b"content-encoding")
        if encoding:
            self.decoder = self.make_decoder(b", ".join(encoding).decode("latin-1"))
            self.body = bytearray()
        chunks, self.chunks = self.chunks, None
        self.buffered = 0
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        if chunks:
            for data in chunks:
                self.encoded -= len(data)
                self._body(data)
        if self.ready and self.decoder is not None and self.error is None:
            try:  # the end of the body came before the switch: flush now
                for piece in self.decoder.flush():
                    self.body += piece
            except RestimingError as exc:
                self._fail(exc)
        if not self.ready:
            self.reading = True
            if self.read_ns:
                self.read_due = _now() + self.read_ns
            due = self.due()
            if due:
                self.sweep.watch(self, due, self.loop)

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
