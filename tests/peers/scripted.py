"""A scriptable HTTP/1.1 server for hostile and timing-precise engine tests.

Strategy: the server owns a background daemon thread running its own asyncio loop, so it
serves any client — the engine on any loop, a blocking ``http.client``, curl in a
subprocess. Sockets are raw and non-blocking (``loop.sock_*``), TLS is an ``ssl.SSLObject``
over memory BIOs: the server always holds the real TCP socket, so ``Reset`` is a genuine
RST even under TLS and ``Send`` returns only once the kernel has the bytes (TCP_NODELAY),
which keeps ``Sleep`` gaps exact. Requests are *read* with a fresh h11 server connection
per request; responses are *written* as raw bytes chosen by the handler (see ``wire.py``),
so malformed output is possible. Test peer for SPEC.md §3 (timing) and §4 (bad input).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import h11

from .conn import ClientGone, Peer
from .wire import (  # re-exported: tests import everything from here
    Action, Close, Drain, KeepOpen, Reset, Send, Sleep, Trickle,
    chunk_body, interim, response, split_response, timed_response,
)

__all__ = [
    "ScriptedServer", "Request",
    "Action", "Send", "Sleep", "Close", "Reset", "Trickle", "KeepOpen", "Drain",
    "response", "interim", "chunk_body", "split_response", "timed_response",
]

_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Request:
    """One request as the server parsed it. Header names are lowercased (h11)."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection_index: int           # 0 for the first connection the server accepted
    request_index_on_connection: int
    http_version: str = "1.1"
    raw: bytes = b""                # the exact request bytes, head and framed body
    received_at: float = 0.0        # time.monotonic() when the request was complete

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str | bytes) -> bytes | None:
        """The first value of ``name``, or None."""
        key = name.lower().encode() if isinstance(name, str) else name.lower()
        return next((v for n, v in self.headers if n == key), None)

    @property
    def keep_alive(self) -> bool:
        tokens = (self.header("connection") or b"").lower()
        if self.http_version == "1.0":
            return b"keep-alive" in tokens
        return b"close" not in tokens


Handler = Callable[[Request], object] | Mapping[str, object] | list | bytes | None
_RESPONSE_CLOSES = re.compile(rb"(?im)^connection:[^\r\n]*\bclose\b")


class ScriptedServer:
    """HTTP/1.1 server whose every response is a list of actions chosen by ``handler``.

    ``handler``: None (200 "ok"), a callable ``handler(request) -> actions``, a list of
    actions used for every request, or a dict mapping a target (exact, then the path
    without query) to either of those; unknown paths get 404. Actions may also be given
    as plain ``bytes`` (one ``Send``).
    ``on_connect(connection_index) -> actions`` runs on the plain TCP socket right after
    accept, before any TLS handshake and before reading. ``read_requests=False`` accepts
    connections and then never reads them.
    """

    def __init__(
        self,
        handler: Handler = None,
        *,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        on_connect: Callable[[int], object] | None = None,
        read_requests: bool = True,
    ) -> None:
        self.handler, self.tls, self.host = handler, tls, host
        self.on_connect, self.read_requests = on_connect, read_requests
        self.errors: list[str] = []         # handler (or server) exceptions, as tracebacks
        self.tls_failures: list[str] = []   # handshakes that failed (e.g. client rejected us)
        self._lock = threading.Condition()
        self._connections = 0
        self._active = 0
        self._requests: list[Request] = []
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                        name=f"ScriptedServer-{id(self):x}")
        self._thread.start()
        if not self._ready.wait(_STOP_SECONDS):
            raise RuntimeError("scripted server did not start")
        if self._startup_error is not None:
            self._thread.join(_STOP_SECONDS)
            self._thread = None
            raise RuntimeError("scripted server failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        """Close the listener and every connection, then join the thread (bounded)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        except RuntimeError:
            pass  # loop already closed: the thread is ending on its own
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"scripted server thread did not stop within {timeout}s")

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- addresses and statistics -----------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + (path if path.startswith("/") else "/" + path)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def active_connections(self) -> int:
        """Connections accepted and not yet closed by the server (its side of the socket)."""
        with self._lock:
            return self._active

    @property
    def requests(self) -> list[Request]:
        """Requests fully read so far (a copy), in arrival order."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self._requests) >= count, timeout)

    # -- the server thread ------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(), which re-raises in the test thread
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, 0))
            listener.listen(128)
            listener.setblocking(False)
            self._port = listener.getsockname()[1]
            accept = asyncio.create_task(self._accept_loop(listener))
            self._ready.set()
            await self._stop_event.wait()
            accept.cancel()
            tasks = [accept, *self._tasks]
            for task in tasks:
                task.cancel()  # each connection task closes its socket in `finally`
            await asyncio.wait(tasks, timeout=_STOP_SECONDS / 2)
        finally:
            listener.close()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            # Without NODELAY, Nagle plus delayed ACKs can hold a small write ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = self._connections
                self._connections += 1
                self._active += 1
            task = loop.create_task(self._serve(Peer(loop, sock), index))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, peer: Peer, index: int) -> None:
        try:
            if self.on_connect is not None:
                if not await self._run(peer, _as_actions(self.on_connect(index)), bytearray()):
                    return
            if self.tls is not None:
                try:
                    await peer.start_tls(self.tls)
                except (ssl.SSLError, ClientGone) as exc:
                    self.tls_failures.append(repr(exc))
                    return
            if not self.read_requests:
                await self._stop_event.wait()
                return
            pending, number = b"", 0
            while True:
                try:
                    request, pending = await self._read_request(peer, pending, index, number)
                except h11.RemoteProtocolError:
                    await peer.send(response(400, body=b"bad request\n"))
                    await peer.close()
                    return
                if request is None:
                    await peer.close()
                    return
                with self._lock:
                    self._requests.append(request)
                    self._lock.notify_all()
                sent = bytearray()
                if not await self._run(peer, self._actions_for(request), sent):
                    return
                if not request.keep_alive or _RESPONSE_CLOSES.search(sent):
                    await peer.close()
                    return
                number += 1
        except (ClientGone, OSError):
            pass  # the client went away mid-script: expected with hostile scripts
        except Exception:
            # A bug in the server itself: surface it like a handler error.
            self.errors.append(traceback.format_exc())
        finally:
            peer.abandon()
            with self._lock:
                self._active -= 1
                self._lock.notify_all()

    async def _read_request(self, peer: Peer, pending: bytes, index: int, number: int):
        # A fresh h11 connection per request: responses bypass h11, so its cycle never
        # completes; bytes it did not consume (pipelining) carry over as `pending`.
        conn = h11.Connection(h11.SERVER)
        fed = bytearray(pending)
        if pending:
            conn.receive_data(pending)
        head, body = None, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await peer.recv()
                if not data:
                    if not fed:
                        return None, b""  # clean close between requests
                    raise ClientGone("EOF inside a request")
                fed += data
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        trailing = conn.trailing_data[0]
        request = Request(
            method=head.method.decode("ascii"),
            target=head.target.decode("latin-1"),
            headers=list(head.headers),
            body=bytes(body),
            connection_index=index,
            request_index_on_connection=number,
            http_version=head.http_version.decode("ascii"),
            raw=bytes(fed[:len(fed) - len(trailing)]),
            received_at=time.monotonic(),
        )
        return request, bytes(trailing)

    def _actions_for(self, request: Request) -> list[Action]:
        handler = self.handler
        try:
            if handler is None:
                return [Send(response(200, [("content-type", "text/plain")], b"ok"))]
            if isinstance(handler, Mapping):
                handler = handler.get(request.target, handler.get(request.path))
                if handler is None:
                    return [Send(response(404, [("content-type", "text/plain")], b"not found"))]
            if callable(handler):
                handler = handler(request)
            return _as_actions(handler)
        except Exception:
            # A broken handler must be visible to the test, not just a hung client.
            self.errors.append(traceback.format_exc())
            return [Send(response(500, body=b"handler error\n")), Close()]

    async def _run(self, peer: Peer, actions: list[Action], sent: bytearray) -> bool:
        """Execute ``actions``; False once the connection is finished."""
        for action in actions:
            if isinstance(action, Send):
                await peer.send(action.data)
                sent += action.data
            elif isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Close):
                await peer.close()
                return False
            elif isinstance(action, Reset):
                peer.reset()
                return False
            elif isinstance(action, Trickle):
                data, offset = action.data, 0
                while data is None or offset < len(data):
                    if offset:
                        await asyncio.sleep(action.interval)
                    piece = action.filler * action.chunk if data is None else \
                        data[offset:offset + action.chunk]
                    await peer.send(piece)
                    if data is not None:
                        sent += piece
                    offset += action.chunk
            elif isinstance(action, KeepOpen):
                await self._stop_event.wait()
                return False
            elif isinstance(action, Drain):
                while await peer.recv():
                    pass
                await peer.close()
                return False
            else:
                raise TypeError(f"not an action: {action!r}")
        return True


def _as_actions(value: object) -> list[Action]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        return [Send(bytes(value))]
    if isinstance(value, Action):
        return [value]
    return list(value)
