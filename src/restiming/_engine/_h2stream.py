"""One HTTP/2 stream: the exchange surface of ``HTTP11Connection`` over a stream of
an ``H2Connection`` (``_http2``), so the client layer runs unchanged on HTTP/2.

``start`` sends HEADERS (request_start when they are handed to the transport) and as
much body as the flow-control windows allow; ``drain`` waits for the rest and stamps
request_end; the connection's ``data_received`` dispatches this stream's h2 events to
``on_event`` with the arrival stamps (interim and final HEADERS, DATA, END_STREAM,
RST_STREAM). Buffered mode (``stream()``, redirects) acknowledges DATA to the peer only
when the caller takes a chunk, which bounds what an unread stream holds to its window.
Deadlines are data (``due``/``expire``) for the client's sweep, as for HTTP/1.1.
https://www.rfc-editor.org/rfc/rfc9113#section-8
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from restiming._binding import lib
from restiming._exceptions import ConnectionReset, ProtocolError, StreamRefused, StreamReset
from restiming._fields import SLOT

from ._exchange import BODY, DONE, HEAD, IDLE, WANTED, Exchange

if TYPE_CHECKING:
    from ._http2 import H2Connection

__all__ = ["H2Stream", "code_name"]

_now = lib.rt_now_ns
_REQUEST_START, _REQUEST_END = SLOT["request_start"], SLOT["request_end"]
_INTERIM = SLOT["first_interim_response_start"]
_NOT_INTERIM = (100, 101)
# Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2); Host
# becomes :authority.
_DROP = frozenset((b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                   b"upgrade"))
_REFUSED = ErrorCodes.REFUSED_STREAM


def code_name(code) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{int(code):x}"


class _Fields:
    """Response fields as h2 gives them (bytes), for ``Headers.from_h11``."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def raw_items(self) -> list:
        return self.items


class _Head:
    """The final response head, shaped like h11's ``Response`` for the client."""

    __slots__ = ("status_code", "headers")
    reason = b""
    http_version = b"2"

    def __init__(self, status_code: int, headers: _Fields) -> None:
        self.status_code = status_code
        self.headers = headers


class H2Stream(Exchange):
    """One exchange on an ``H2Connection``, with ``HTTP11Connection``'s surface."""

    multiplexed = True
    WRITE_TIMEOUT = "the request body did not drain within the write timeout (HTTP/2 flow-control window closed?)"

    __slots__ = ("connection", "id", "origin", "sid", "remote_address", "tls_version", "alpn", "flows", "unacked",
                 "_out", "_sent", "reset")

    def __init__(self, connection: H2Connection) -> None:
        self._init_exchange(connection.loop, connection.sweep, connection.make_decoder)
        self.connection = connection
        self.id = connection.id
        self.origin = connection.origin
        self.remote_address = connection.remote_address
        self.tls_version = connection.tls_version
        self.alpn = "h2"
        self.sid = 0
        self.reset = False
        self.flows: collections.deque | None = None
        self.unacked = 0
        self._out = b""
        self._sent = 0

    @property
    def closed(self) -> bool:
        return self.connection.closed

    # -------------------------------------------------------------- exchange
    def start(self, stamps, request, head, body: bytes, deliver_head, read_ns: int, total_due: int,
              max_body: int) -> int:
        """Send the request's HEADERS (and as much body as the windows allow).
        Returns non-zero when the caller must ``drain`` before request_end."""
        conn = self.connection
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            raise ConnectionReset("the connection closed before the request was sent")
        if conn.goaway:
            raise StreamRefused("the server sent GOAWAY before this request was sent",
                                code=_REFUSED, code_name="REFUSED_STREAM")
        self.reset_exchange(stamps, deliver_head, read_ns, total_due, max_body)
        self.state = HEAD
        authority = b""
        headers = [(b":method", request.method), (b":scheme", b"https"), (b":authority", b""),
                   (b":path", request.target)]
        for name, value in request.headers:
            if name in _DROP:
                if name == b"host":
                    authority = value
                continue
            if name == b"te" and value.lower() != b"trailers":
                continue
            headers.append((name, value))
        headers[2] = (b":authority", authority)
        h2c = conn.h2
        try:
            sid = self.sid = h2c.get_next_available_stream_id()
            conn.streams[sid] = self
            h2c.send_headers(sid, headers, end_stream=not body)
        except h2.exceptions.TooManyStreamsError as exc:
            conn.streams.pop(self.sid, None)
            self.sid = 0
            self.state = IDLE
            raise StreamRefused("no stream left on this connection (SETTINGS_MAX_CONCURRENT_STREAMS)",
                                code=_REFUSED, code_name="REFUSED_STREAM") from exc
        except h2.exceptions.NoAvailableStreamIDError as exc:
            conn.streams.pop(self.sid, None)
            self.sid = 0
            self.state = IDLE
            conn.goaway = True  # no new stream on this connection ever
            raise StreamRefused("stream ids of this connection are exhausted", code=_REFUSED,
                                code_name="REFUSED_STREAM") from exc
        except h2.exceptions.H2Error as exc:
            self.state = IDLE
            raise ProtocolError(f"cannot send this request over HTTP/2: {exc}") from exc
        conn.requests += 1
        self._out = body
        self._sent = 0
        stamps[_REQUEST_START] = _now()
        done = True
        if body:
            done = self.send_body()
            if not done:
                conn._blocked[sid] = self
        conn._flush()
        transport = conn.transport
        pending = 0 if transport is None else transport.get_write_buffer_size()
        now = _now()
        if done and not pending:
            stamps[_REQUEST_END] = now
        self.watch_read(now)
        return 0 if done and not pending else 1

    def send_body(self) -> bool:
        """Hand the windows' worth of body to h2; True once END_STREAM is sent."""
        body = self._out
        h2c = self.connection.h2
        sid = self.sid
        n = len(body)
        pos = self._sent
        try:
            while pos < n:
                window = h2c.local_flow_control_window(sid)
                if window <= 0:
                    break
                size = min(window, h2c.max_outbound_frame_size, n - pos)
                h2c.send_data(sid, body[pos:pos + size], end_stream=pos + size == n)
                pos += size
        except h2.exceptions.H2Error as exc:
            self._sent = pos
            self.fail(ProtocolError(f"cannot send the request body over HTTP/2: {exc}"), exc)
            return True
        self._sent = pos
        if pos >= n:
            self._out = b""
            return True
        return False

    async def drain(self, write_ns: int) -> None:
        """Wait until the body is sent and the transport has written it, then
        stamp request_end."""
        conn = self.connection
        self._writing = True
        conn._writers.add(self)
        if write_ns:
            self.write_due = _now() + write_ns
            self.sweep.watch(self, self.due(), self.loop)
        try:
            # A server may answer before reading the whole body (and stop the window):
            # the exchange is over then, and request_end stays 0 if the body never went.
            while (self._out or (conn.transport is not None and conn.transport.get_write_buffer_size())) \
                    and not conn.closed and self.error is None and self.state is not DONE:
                await self.wait()
        finally:
            self._writing = False
            self.write_due = 0
            conn._writers.discard(self)
        if self.error is not None and not self.ready and self.state is not DONE:
            raise self.error
        if self.state is DONE:
            if not self._out:
                self.stamps[_REQUEST_END] = min(_now(), self.end_ns)
            return
        if self._out or conn.closed:
            raise ConnectionReset("the connection closed before the request was sent")
        self.stamps[_REQUEST_END] = _now()

    # -------------------------------------------------------------- receiving
    def on_event(self, event, start_ns: int, now: int) -> None:
        kind = type(event)
        if self.state is IDLE or self.state is DONE:
            return
        self.response_started = True
        if self.reading and self.read_ns:
            self.read_due = now + self.read_ns
        if kind is h2.events.DataReceived:
            self._data(event.data, event.flow_controlled_length)
        elif kind is h2.events.ResponseReceived:
            self._on_head(event.headers, start_ns, now)
        elif kind is h2.events.StreamEnded:
            if self.state is HEAD:
                self.fail(ProtocolError("the stream ended without a response"))
                return
            self.end_body(now)
        elif kind is h2.events.InformationalResponseReceived:
            status = _status(event.headers)
            if status not in _NOT_INTERIM and not self.stamps[_INTERIM]:
                self.stamps[_INTERIM] = start_ns
        elif kind is h2.events.StreamReset:
            self.reset = True
            code = event.error_code
            if code == _REFUSED and not self.head:
                self.fail(StreamRefused(f"the server refused stream {self.sid} (REFUSED_STREAM)",
                                        code=int(code), code_name="REFUSED_STREAM"))
            else:
                self.fail(StreamReset(f"the server reset stream {self.sid} ({code_name(code)})",
                                      code=int(code), code_name=code_name(code)))

    def _on_head(self, headers: list, start_ns: int, now: int) -> None:
        status = _status(headers)
        if status is None:
            self.fail(ProtocolError("response without a valid :status"))
            return
        fields: dict = {}
        items = []
        for name, value in headers:
            if name[:1] == b":":
                continue
            items.append((name, value))
            if name in WANTED:
                fields.setdefault(name, []).append(value)
        if self.on_head(_Head(status, _Fields(items)), fields, status, start_ns, now):
            self.chunks = collections.deque()
            self.flows = collections.deque()
            self.wake()

    def _data(self, data: bytes, flow: int) -> None:
        if self.state is not BODY:
            return
        if self.collect:
            self._ack(flow)
            if data:
                self.collect_body(data)
            return
        self.unacked += flow
        if data:
            self.encoded += len(data)
            self.chunks.append(data)
            self.flows.append(flow)
            self.buffered += len(data)
            self.wake()
        elif flow:
            self._ack(flow)
            self.unacked -= flow

    def _ack(self, flow: int) -> None:
        if flow and not self.reset:
            try:
                self.connection.h2.acknowledge_received_data(flow, self.sid)
            except h2.exceptions.H2Error:
                pass

    async def next_chunk(self) -> bytes | None:
        """Buffered mode (stream, redirect): the next encoded body chunk, or ``None``
        at the end; taking a chunk opens the window by its size."""
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks.popleft()
                flow = self.flows.popleft()
                self.buffered -= len(data)
                self.unacked -= flow
                self._ack(flow)
                self.connection._flush()
                return data
            if not await self.wait_for_bytes():
                return None

    def collect_rest(self) -> None:
        """Switch a head-delivered exchange to collecting its body."""
        self.deliver_head = False
        self.ready = self.state is DONE
        self.start_collecting()
        chunks, self.chunks = self.chunks, None
        self.flows = None
        self.buffered = 0
        if self.unacked:
            self._ack(self.unacked)
            self.unacked = 0
            self.connection._flush()
        self.replay_into_body(chunks)

    # ------------------------------------------------------------- lifecycle
    def finish_cycle(self) -> bool:
        """After the exchange: True when the stream ended cleanly (its connection
        stays open for others either way, unless it failed as a whole)."""
        self.sweep.unwatch(self)
        self.waiter = None
        self.reading = False
        return self.state is DONE and self.error is None and not self.broken

    def close(self) -> None:
        """Abandon this stream (never the connection: other streams use it)."""
        self.broken = True
        self.sweep.unwatch(self)


def _status(headers) -> int | None:
    for name, value in headers:
        if name == b":status":
            if len(value) == 3 and value.isdigit():
                return int(value)
            return None
    return None
