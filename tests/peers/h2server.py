"""A scriptable HTTP/2 server over TLS (ALPN h2), built on the ``h2`` state machine.

Strategy: as ``ScriptedServer``, the server runs its own asyncio loop in a daemon
thread, so the engine under test runs on any loop. Each accepted connection gets an
``H2Peer``: a reader task feeds h2 and dispatches events; every request (a
RequestReceived) runs ``handler(peer, request)`` as its own task, so a handler can
answer streams in any order, send 103 Early Hints, reset a stream, send GOAWAY
mid-flight, close its window or write raw frames that ignore flow control. Handler
exceptions are collected (the fixture fails the test with them). Test peer for the
HTTP/2 cases of SPEC.md §3/§4 and issue 12 (RFC 9113).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import traceback
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes

__all__ = ["H2Server", "H2Peer", "H2Request", "ErrorCodes"]


@dataclass
class H2Request:
    stream_id: int
    headers: dict
    connection_index: int
    body: bytearray = field(default_factory=bytearray)
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def path(self) -> str:
        return self.headers.get(b":path", b"").decode()


class H2Peer:
    """One server-side connection, for handlers."""

    def __init__(self, server: "H2Server", reader, writer, index: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.requests: dict[int, H2Request] = {}
        self.window = asyncio.Event()
        self.closed = False
        self.sent = 0

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.sent += len(data)
            self.writer.write(data)

    async def send_headers(self, sid: int, status: int, headers=(), end_stream: bool = False) -> None:
        fields = [(b":status", str(status).encode())] + [(n.encode(), v.encode()) for n, v in headers]
        self.h2.send_headers(sid, fields, end_stream=end_stream)
        self.flush()
        await self.writer.drain()

    async def send_body(self, sid: int, data: bytes, end_stream: bool = True) -> None:
        """Send ``data`` as DATA frames, waiting for the client's window as needed."""
        pos = 0
        while pos < len(data) or (end_stream and pos == len(data) == 0):
            if not data:
                self.h2.end_stream(sid)
                break
            window = self.h2.local_flow_control_window(sid)
            if window <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            size = min(window, self.h2.max_outbound_frame_size, len(data) - pos)
            end = end_stream and pos + size == len(data)
            self.h2.send_data(sid, data[pos:pos + size], end_stream=end)
            pos += size
            self.flush()
            await self.writer.drain()
            if end:
                break
        self.flush()
        await self.writer.drain()

    async def respond(self, sid: int, status: int = 200, body: bytes = b"ok", headers=()) -> None:
        await self.send_headers(sid, status, [("content-length", str(len(body))), *headers],
                                end_stream=not body)
        if body:
            await self.send_body(sid, body)

    def reset(self, sid: int, code=ErrorCodes.INTERNAL_ERROR) -> None:
        self.h2.reset_stream(sid, code)
        self.flush()

    def goaway(self, last_stream_id: int, code=ErrorCodes.NO_ERROR) -> None:
        """Write a GOAWAY frame directly (h2 would refuse to go on after its own)."""
        from hyperframe.frame import GoAwayFrame

        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        self.raw(frame.serialize())

    def raw(self, data: bytes) -> None:
        if not self.closed:
            self.sent += len(data)
            self.writer.write(data)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


class H2Server:
    """``H2Server(ca, handler, settings=None)``: ``handler(peer, request)`` is a
    coroutine per stream. ``settings``: extra local SETTINGS (h2 SettingCodes -> int)
    such as INITIAL_WINDOW_SIZE=0 or MAX_CONCURRENT_STREAMS=1."""

    def __init__(self, ca, handler, *, settings: dict | None = None, wait_body: bool = True) -> None:
        self.ca = ca
        self.handler = handler
        self.settings = settings or {}
        self.wait_body = wait_body
        self.port = 0
        self.errors: list[str] = []
        self.connections = 0
        self.peers: list[H2Peer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._started = threading.Event()
        self._tasks: set = set()

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def start(self) -> "H2Server":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("h2 server did not start")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        ctx = self.ca.server_context()
        ctx.set_alpn_protocols(["h2"])

        async def boot():
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
            self.port = self._server.sockets[0].getsockname()[1]
            self._started.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _serve(self, reader, writer) -> None:
        index = self.connections
        self.connections += 1
        peer = H2Peer(self, reader, writer, index)
        self.peers.append(peer)
        conn = peer.h2
        conn.initiate_connection()
        if self.settings:
            conn.update_settings(dict(self.settings))
        peer.flush()
        try:
            while not peer.closed:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except Exception:  # the client broke the protocol: stop serving
                    peer.flush()
                    break
                for event in events:
                    self._dispatch(peer, event)
                peer.flush()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            for task in list(self._tasks):
                if getattr(task, "peer", None) is peer:
                    task.cancel()
            peer.closed = True
            writer.close()

    def _dispatch(self, peer: H2Peer, event) -> None:
        kind = type(event)
        if kind is h2.events.RequestReceived:
            request = H2Request(event.stream_id, dict(event.headers), peer.index)
            peer.requests[event.stream_id] = request
            if event.stream_ended is not None:
                request.complete.set()
            task = asyncio.ensure_future(self._handle(peer, request))
            task.peer = peer
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind is h2.events.DataReceived:
            request = peer.requests.get(event.stream_id)
            if request is not None:
                request.body += event.data
            if event.flow_controlled_length:
                try:
                    peer.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                except Exception:
                    pass
        elif kind is h2.events.StreamEnded:
            request = peer.requests.get(event.stream_id)
            if request is not None:
                request.complete.set()
        elif kind in (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged):
            peer.window.set()
        elif kind is h2.events.StreamReset:
            request = peer.requests.get(event.stream_id)
            if request is not None:
                request.complete.set()

    async def _handle(self, peer: H2Peer, request: H2Request) -> None:
        try:
            await self.handler(peer, request)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError):
            pass
        except Exception as exc:
            import h2.exceptions

            if isinstance(exc, h2.exceptions.StreamClosedError):
                return  # the client cancelled the stream: fine
            self.errors.append(traceback.format_exc())

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown():
            self._server.close()
            for peer in self.peers:
                if not peer.closed:
                    peer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = None


__all__ += ["SettingCodes"]
SettingCodes = h2.settings.SettingCodes
