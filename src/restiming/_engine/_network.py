"""The socket layer: the engine's own non-blocking sockets, driven through asyncio
protocols, with every byte's arrival stamped by the C clock.

``open_stream`` creates the socket itself (TCP_NODELAY), connects it with
``loop.sock_connect`` trying each resolved address in order, and hands it to
``loop.create_connection(sock=...)`` (with ``ssl=`` for TLS) so I/O runs on the
loop's transports: the same code on asyncio and on uvloop. ``StreamProtocol``
queues received chunks with the monotonic nanosecond stamp of their arrival, so
"first byte" stamps are the time the bytes reached us, not when we looked.
This module stamps connect phases only; OSError/ssl errors are translated here.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl

from restiming._binding import lib
from restiming._exceptions import (
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    ReadTimeout,
    TLSError,
    WriteTimeout,
)

__all__ = ["StreamProtocol", "open_stream", "format_address", "translate_io"]

_now = lib.rt_now_ns
_EOF = b""


def format_address(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StreamProtocol(asyncio.Protocol):
    """Buffers (arrival_ns, bytes) chunks; one reader and one writer at a time."""

    __slots__ = ("transport", "loop", "_chunks", "_waiter", "_eof", "_exc", "_drain_waiter",
                 "bytes_in", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._eof = False
        self._exc: BaseException | None = None
        self._drain_waiter: asyncio.Future | None = None
        self.bytes_in = 0
        self.closed = False

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append((_now(), data))
        self.bytes_in += len(data)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._eof = True
        if exc is not None:
            self._exc = exc
        self._wake()
        d = self._drain_waiter
        if d is not None and not d.done():
            d.set_result(None)

    def pause_writing(self) -> None:
        pass  # drain() watches the buffer size; resume_writing() wakes it

    def resume_writing(self) -> None:
        d = self._drain_waiter
        if d is not None and not d.done():
            d.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # engine side
    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    def has_data(self) -> bool:
        return bool(self._chunks)

    async def _wait(self, slot: str, timeout: float | None) -> bool:
        """Park a future in ``slot`` until a callback resolves it; False on timeout.
        A timer handle, not ``asyncio.timeout``: no task, no cancellation to undo."""
        fut = self.loop.create_future()
        setattr(self, slot, fut)
        handle = self.loop.call_later(timeout, _expire, fut) if timeout is not None else None
        try:
            await fut
        finally:
            setattr(self, slot, None)
            if handle is not None:
                handle.cancel()
        return fut.result() is not _TIMED_OUT

    async def read(self, timeout: float | None) -> tuple[int, bytes]:
        """The next chunk and its arrival stamp; ``b""`` at EOF."""
        if self._chunks:
            return self._chunks.popleft()
        if self._eof:
            if self._exc is not None:
                raise translate_io(self._exc, "reading the response")
            return _now(), _EOF
        if not await self._wait("_waiter", timeout):
            raise ReadTimeout(f"no response bytes for {timeout:g} s")
        if self._chunks:
            return self._chunks.popleft()
        if self._exc is not None:
            raise translate_io(self._exc, "reading the response")
        return _now(), _EOF

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionReset("the connection closed before the request was sent")
        self.transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the transport's buffer is empty (the bytes are in the kernel)."""
        transport = self.transport
        while transport.get_write_buffer_size() and not self.closed:
            if not await self._wait("_drain_waiter", timeout):
                raise WriteTimeout(f"the request did not drain into the socket within {timeout:g} s")
        if self.closed and self._exc is not None:
            raise translate_io(self._exc, "sending the request")

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


_TIMED_OUT = object()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(_TIMED_OUT)


def translate_io(exc: BaseException, doing: str):
    """An OSError or ssl.SSLError as restiming's TLSError or ConnectionReset."""
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error while {doing}: {exc}")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        err = ConnectionReset(f"connection reset by peer while {doing}")
    else:
        err = ConnectionReset(f"connection lost while {doing}: {exc}")
    err.__cause__ = exc
    return err


class Stream:
    """An open connection: the protocol plus what we learnt while opening it."""

    __slots__ = ("protocol", "remote_address", "tls_version", "alpn")

    def __init__(self, protocol: StreamProtocol, remote_address: str, tls_version: str, alpn: str | None):
        self.protocol = protocol
        self.remote_address = remote_address
        self.tls_version = tls_version
        self.alpn = alpn


async def open_stream(rec, addrs, host: str, ssl_context: ssl.SSLContext | None,
                      timeout: float | None) -> Stream:
    """Connect to the first address of ``addrs`` that accepts, then TLS if asked.

    Stamps connect_start (per attempt, so the stamps describe the connection that
    succeeded), secure_connection_start and connect_end on ``rec``.
    """
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    last: BaseException | None = None
    for family, sockaddr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        owned = True  # False once the loop's transport owns the socket
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec.stamp("connect_start")
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, sockaddr)
            except TimeoutError as exc:
                raise ConnectTimeout(f"connecting to {format_address(sockaddr)} took over {timeout:g} s") from exc
            except OSError as exc:
                sock.close()
                last = exc
                errors.append(f"{format_address(sockaddr)}: {exc.strerror or exc}")
                continue
            if ssl_context is None:
                rec.stamp("connect_end")
            else:
                rec.stamp("secure_connection_start")
            protocol = StreamProtocol(loop)
            # From here the loop owns the socket and closes it on failure itself. It
            # must not be closed here too: uvloop closes the fd in libuv, possibly
            # after we would have, when the number may already belong to another
            # connection (a double close that breaks an unrelated socket).
            owned = False
            try:
                async with asyncio.timeout(timeout):
                    await loop.create_connection(
                        lambda: protocol, sock=sock, ssl=ssl_context,
                        server_hostname=host if ssl_context is not None else None,
                        ssl_handshake_timeout=timeout if ssl_context is not None else None)
            except TimeoutError as exc:
                raise ConnectTimeout(f"TLS handshake with {host} took over {timeout:g} s") from exc
            except ssl.SSLError as exc:
                raise TLSError(f"TLS handshake with {host} failed: {exc.reason or exc}") from exc
            except OSError as exc:
                kind = TLSError if ssl_context is not None else ConnectError
                raise kind(f"connection to {host} failed while starting: {exc}") from exc
            try:
                tls_version = alpn = ""
                if ssl_context is not None:
                    rec.stamp("connect_end")
                    sslobj = protocol.transport.get_extra_info("ssl_object")
                    if sslobj is not None:
                        tls_version = sslobj.version() or ""
                        alpn = sslobj.selected_alpn_protocol() or ""
                # high=0: pause_writing fires whenever bytes wait in user space, so drain()
                # learns exactly when the request is in the kernel (request_end).
                protocol.transport.set_write_buffer_limits(high=0, low=0)
            except BaseException:
                protocol.abort()
                raise
            return Stream(protocol, format_address(sockaddr), tls_version, alpn or None)
        except BaseException:
            if owned:
                sock.close()
            elif not isinstance(loop, asyncio.BaseEventLoop):
                # uvloop closed (or will close) the fd in libuv and usually detaches
                # this object itself, but not when a reset beats the end of
                # create_connection: then the object would close the number again when
                # garbage-collected, maybe under a newer connection. Detach it here.
                # (asyncio's own transports close this very object: nothing to do.)
                sock.detach()
            raise
    raise ConnectError(f"cannot connect to {host}: {'; '.join(errors) or 'no address'}") from last
