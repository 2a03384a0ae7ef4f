"""The protocol layer for HTTP/2: one TLS connection, many streams, the ``h2`` state
machine driven from the transport callbacks (the optional ``restiming[http2]`` extra).

``H2Connection`` is the asyncio protocol of a connection whose TLS handshake chose
``h2`` by ALPN: it adopts the transport of the HTTP/1.1 protocol that connected
it (``adopt``). ``H2Stream`` (``_h2stream``) is one exchange on it and offers the client the
surface of ``HTTP11Connection`` (start/drain/wait/ready/head/fields/next_chunk/
collect_rest/finish_cycle/due/expire…), so the client layer runs unchanged; the
pool hands out streams of a connection while it has room under the server's
SETTINGS_MAX_CONCURRENT_STREAMS (``has_room``/``open_stream``).

Stamps per stream: request_start when its HEADERS frame is handed to the
transport, request_end once its END_STREAM is written and the transport buffer
is empty, first_interim_response_start / final_response_headers_start at the
arrival of the chunk completing the first frame of the read that held that
HEADERS (the chunk where it began when that frame was split across reads),
response_end at the chunk that held END_STREAM.

Flow control: ``fetch()`` bodies are acknowledged as they arrive (bounded by
``max_body_bytes``); a streamed body is acknowledged only when the caller takes a
chunk, so the unread bytes of one stream stay below ``STREAM_WINDOW`` and of a
connection below ``CONNECTION_WINDOW``. A peer that sends beyond the window is a
connection error (h2's FLOW_CONTROL_ERROR).

Wire bytes: every frame header is parsed as it passes (``_Frames``), so the
bytes of a stream's own frames (HEADERS, CONTINUATION, DATA, RST_STREAM,
WINDOW_UPDATE; 9-byte header and padding included) count in that stream's
``bytes_sent``/``bytes_received``. Connection-level frames (the preface,
SETTINGS, PING, GOAWAY, stream-0 WINDOW_UPDATE) count in the oldest stream open
at the time, and in no fetch while none is open (``shared_in``/``shared_out``).

GOAWAY is taken out of the byte stream before h2 sees it (h2 accepts no frame
after a GOAWAY, but a graceful one lets the streams it covers finish): streams
above its last stream id fail with ``StreamRefused`` (retried once on a new
connection), the others complete, then the connection closes.
https://www.rfc-editor.org/rfc/rfc9113
https://w3c.github.io/resource-timing/#attribute-descriptions
"""

from __future__ import annotations

import asyncio
import itertools
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from restiming._binding import lib
from restiming._exceptions import (
    ConnectionReset,
    ConnectionTerminated,
    HeaderTooLarge,
    ProtocolError,
    RestimingError,
    StreamRefused,
)

from ._h2stream import H2Stream, code_name
from ._http11 import DONE
from ._network import translate_io

__all__ = ["H2Connection", "H2Stream", "STREAM_WINDOW", "CONNECTION_WINDOW"]

#: Receive window of one stream: the most unread bytes a streamed response holds.
STREAM_WINDOW = 1 << 20
#: Receive window of a connection: the most unread bytes all its streams hold.
CONNECTION_WINDOW = 16 << 20
#: Streams opened before the server's SETTINGS arrive (RFC 9113 §6.5.2 advises
#: servers to allow at least 100).
INITIAL_STREAMS = 100

_now = lib.rt_now_ns
_ids = itertools.count(1 << 24)
_PREFACE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_GOAWAY = 7
_REFUSED = ErrorCodes.REFUSED_STREAM
_CANCEL = ErrorCodes.CANCEL


class _Frames:
    """Follows frame boundaries in one direction of the byte stream: credits each
    frame's bytes to its stream id and (inbound) takes GOAWAY frames out."""

    __slots__ = ("head", "left", "sid", "goaway", "divert", "credit")

    def __init__(self, credit, preface: int = 0, divert=None) -> None:
        self.head = b""        # a frame header split across reads
        self.left = preface    # bytes of the current frame still to come
        self.sid = 0
        self.goaway: bytearray | None = None
        self.divert = divert   # called with a GOAWAY payload's first 8 bytes
        self.credit = credit   # credit(stream_id, nbytes)

    def feed(self, data: bytes) -> bytes:
        """Count ``data``; returns what the h2 state machine is to see of it."""
        pieces = None
        run = 0
        i, n = 0, len(data)
        credit = self.credit
        while i < n:
            left = self.left
            if left:
                take = n - i if n - i < left else left
                credit(self.sid, take)
                if self.goaway is not None:
                    if len(self.goaway) < 8:
                        self.goaway += data[i:i + min(take, 8 - len(self.goaway))]
                    if pieces is None:
                        pieces = []
                    if run < i:
                        pieces.append(data[run:i])
                    run = i + take
                i += take
                self.left = left - take
                if not self.left and self.goaway is not None:
                    payload, self.goaway = bytes(self.goaway), None
                    self.divert(payload)
                continue
            held = self.head
            need = 9 - len(held)
            if n - i < need:  # hold a partial header until it is whole
                if pieces is None:
                    pieces = []
                if run < i:
                    pieces.append(data[run:i])
                self.head = held + data[i:]
                run = i = n
                break
            start = i
            i += need
            header = held + data[start:i] if held else data[start:i]
            self.head = b""
            self.left = int.from_bytes(header[:3], "big")
            self.sid = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            credit(self.sid, 9)
            if self.divert is not None and header[3] == _GOAWAY:
                if pieces is None:
                    pieces = []
                if run < start:
                    pieces.append(data[run:start])
                run = i
                self.goaway = bytearray()
                if not self.left:
                    self.goaway = None
                    self.divert(b"")
            elif held:
                if pieces is None:
                    pieces = []
                if run < start:
                    pieces.append(data[run:start])
                pieces.append(header)
                run = i
        if pieces is None:
            return data
        if run < n:
            pieces.append(data[run:n])
        return b"".join(pieces)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection (an asyncio protocol); streams are ``H2Stream``."""

    multiplexed = True

    __slots__ = ("loop", "id", "origin", "transport", "h2", "sweep", "remote_address", "tls_version", "alpn",
                 "idle_since", "closed", "broken", "goaway", "streams", "active", "max_streams", "make_decoder",
                 "max_header_bytes", "_in", "_out", "_partial_ns", "shared_in", "shared_out", "_blocked",
                 "_writers", "requests", "error")

    def __init__(self, loop, origin: tuple, sweep, make_decoder, max_header_bytes: int) -> None:
        self.loop = loop
        self.id = next(_ids) & 0xFFFFFFFF
        self.origin = origin
        self.transport = None
        self.sweep = sweep
        self.make_decoder = make_decoder
        self.max_header_bytes = max_header_bytes
        self.remote_address = ""
        self.tls_version = ""
        self.alpn = "h2"
        self.idle_since = time.monotonic()
        self.closed = False
        self.broken = False
        self.goaway = False
        self.error: BaseException | None = None
        self.streams: dict[int, H2Stream] = {}  # stream id -> stream, in opening order
        self.active = 0     # streams handed out and not released
        self.requests = 0
        self.max_streams = INITIAL_STREAMS
        self._blocked: dict[int, H2Stream] = {}  # streams whose body waits for window
        self._writers: set = set()               # streams waiting for the transport to drain
        self.shared_in = self.shared_out = 0
        self._partial_ns = 0
        self._in = _Frames(self._credit_in, 0, self._on_goaway)
        self._out = _Frames(self._credit_out, _PREFACE)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
        })

    @classmethod
    def adopt(cls, h1, sweep) -> "H2Connection":
        """Take over the transport of ``h1`` (an ``HTTP11Connection`` whose TLS
        handshake chose h2), with the bytes it already received."""
        self = cls(h1.loop, h1.origin, sweep, h1.make_decoder, h1._max_head)
        self.remote_address = h1.remote_address
        self.tls_version = h1.tls_version
        transport = h1.transport
        early = h1.h11.trailing_data[0]
        if h1.closed or transport is None or transport.is_closing():
            self.closed = self.broken = True
            return self
        h1.transport = None
        transport.set_protocol(self)
        self.connection_made(transport)
        if early:
            self.data_received(bytes(early))
        if h1.eof:
            self.eof_received()
        return self

    # ------------------------------------------------------------ pool side
    def has_room(self) -> bool:
        return (self.active < self.max_streams and not self.goaway and not self.closed and not self.broken)

    def open_stream(self) -> "H2Stream":
        self.active += 1
        return H2Stream(self)

    def is_idle_usable(self, keepalive_expiry: float, now: float) -> bool:
        return (not self.broken and not self.closed and not self.goaway
                and (self.active or now - self.idle_since < keepalive_expiry))

    def release(self, stream: "H2Stream", clean: bool) -> None:
        """A stream's exchange is over: cancel it if the response is not complete,
        give its unread bytes back to the connection window, free its slot."""
        self.active -= 1
        sid = stream.sid
        if sid and self.streams.pop(sid, None) is not None:
            self._blocked.pop(sid, None)
            self._writers.discard(stream)
            if not self.closed:
                try:
                    if stream.state is not DONE or not clean or stream._out:
                        if not stream.reset:
                            self.h2.reset_stream(sid, _CANCEL)
                    if stream.unacked:
                        self.h2.acknowledge_received_data(stream.unacked, sid)
                        stream.unacked = 0
                except h2.exceptions.H2Error:
                    pass  # the stream is already closed on h2's side
                self._flush()
        if not self.active:
            self.idle_since = time.monotonic()
            if self.goaway and not self.closed:
                self.close()

    # ------------------------------------------------------------ transport side
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=0, low=0)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = _now()
        # The first frame completed in this read began earlier if a partial frame
        # was left over from the previous read.
        start_ns = self._partial_ns or now
        try:
            data = self._in.feed(data)
            events = self.h2.receive_data(data) if data else ()
        except h2.exceptions.DenialOfServiceError as exc:
            self._die(HeaderTooLarge(f"response head exceeds max_header_bytes={self.max_header_bytes}"), exc)
            return
        except h2.exceptions.ProtocolError as exc:
            self._die(ProtocolError(f"HTTP/2 protocol error: {exc}"), exc)
            return
        self._partial_ns = now if (self._in.left or self._in.head) else 0
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is h2.events.WindowUpdated:
                self._pump()
                continue
            sid = getattr(event, "stream_id", 0)
            stream = streams.get(sid) if sid else None
            if stream is not None:
                stream.on_event(event, start_ns, now)
            elif kind is h2.events.RemoteSettingsChanged:
                changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                if changed is not None:
                    self.max_streams = changed.new_value
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._pump()
            start_ns = now
        self._flush()

    def eof_received(self):
        self.broken = True
        return False

    def connection_lost(self, exc) -> None:
        self.closed = self.broken = True
        self.transport = None
        if self.streams:
            err = translate_io(exc, "reading the response") if exc is not None else None
            for stream in list(self.streams.values()):
                if stream.state is not DONE:
                    if err is not None:
                        stream.fail(err)
                    elif self.goaway:
                        stream.fail(ConnectionTerminated("the server closed the connection after GOAWAY "
                                                         "before this response was complete"))
                    else:
                        stream.fail(ConnectionReset("the connection closed during the exchange"))
        for stream in list(self._writers):
            stream.wake()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        for stream in list(self._writers):
            stream.wake()

    # -------------------------------------------------------------- internals
    def _credit_in(self, sid: int, n: int) -> None:
        stream = self.streams.get(sid) if sid else None
        if stream is None:
            stream = next(iter(self.streams.values()), None)
            if stream is None:
                self.shared_in += n
                return
        stream.bytes_in += n

    def _credit_out(self, sid: int, n: int) -> None:
        stream = self.streams.get(sid) if sid else None
        if stream is None:
            stream = next(iter(self.streams.values()), None)
            if stream is None:
                self.shared_out += n
                return
        stream.bytes_out += n

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self._out.feed(data)
            self.transport.write(data)

    def _on_goaway(self, payload: bytes) -> None:
        self.goaway = True
        last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF if len(payload) >= 4 else 0
        code = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else ErrorCodes.PROTOCOL_ERROR
        for sid, stream in list(self.streams.items()):
            if sid > last and stream.state is not DONE:
                stream.reset = True  # the server forgot it: nothing to cancel
                stream.fail(StreamRefused(f"the server sent GOAWAY ({code_name(code)}) with last stream id "
                                          f"{last}: stream {sid} was not processed",
                                          code=_REFUSED, code_name="REFUSED_STREAM"))
        if not self.active:
            self.loop.call_soon(self.close)

    def _pump(self) -> None:
        """Window opened: send what blocked bodies can, wake those now complete."""
        for stream in list(self._blocked.values()):
            if stream.send_body():
                del self._blocked[stream.sid]
                stream.wake()

    def _die(self, err: RestimingError, cause: BaseException) -> None:
        err.__cause__ = cause
        self.error = err
        try:
            self._flush()  # h2 queued a GOAWAY for the peer
        except Exception:
            pass
        for stream in list(self.streams.values()):
            if stream.state is not DONE:
                stream.fail(err)
        self.close()

    def close(self) -> None:
        self.broken = True
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
        for stream in list(self.streams.values()):
            if stream.state is not DONE and stream.error is None:
                stream.fail(ConnectionReset("the connection was closed"))
