"""One accepted TCP socket for the scripted server, with TLS optionally layered in memory.

Strategy: TLS runs in an ``ssl.SSLObject`` over two ``MemoryBIO``s instead of an
``SSLSocket`` or an asyncio SSL transport, so the server keeps the real TCP socket in hand:
``reset()`` is a true RST (SO_LINGER 0) even mid-TLS, and ``send()`` returns only once the
kernel has taken the ciphertext, which is what makes scripted delays exact.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct

__all__ = ["ClientGone", "Peer"]

_READ_SIZE = 65536
_LINGER_SECONDS = 1.0   # lingering close: how long to swallow client bytes before close()


class ClientGone(Exception):
    """The client closed or reset the connection; normal in hostile tests."""


class Peer:
    """One accepted TCP socket, optionally with TLS layered on it in memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop, self.sock = loop, sock
        self.tls: tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO] | None = None
        self.open = True

    async def start_tls(self, context: ssl.SSLContext) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=True)
        self.tls = (obj, incoming, outgoing)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.loop.sock_recv(self.sock, _READ_SIZE)
                if not data:
                    raise ClientGone("EOF during the TLS handshake")
                incoming.write(data)
        await self._flush()  # the Finished message (and TLS 1.3 tickets)

    async def _flush(self) -> None:
        data = self.tls[2].read() if self.tls else b""
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        """Some bytes, or b"" at end of stream."""
        if self.tls is None:
            return await self.loop.sock_recv(self.sock, _READ_SIZE)
        obj, incoming, _ = self.tls
        while True:
            try:
                data = obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()
                raw = await self.loop.sock_recv(self.sock, _READ_SIZE)
                if not raw:
                    return b""  # ragged EOF: treat like a close
                incoming.write(raw)
                continue
            except ssl.SSLZeroReturnError:
                return b""
            await self._flush()
            return data

    async def send(self, data: bytes) -> None:
        if self.tls is None:
            await self.loop.sock_sendall(self.sock, data)
            return
        view = memoryview(data)
        while view:
            view = view[self.tls[0].write(view):]
        await self._flush()

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abandon()

    async def close(self) -> None:
        if self.tls is not None:
            try:
                self.tls[0].unwrap()  # queues close_notify; the peer's reply is not awaited
            except ssl.SSLError:
                pass
            await self._flush()
        self.sock.shutdown(socket.SHUT_WR)
        # Reading until the client's EOF keeps unread bytes from turning FIN into RST.
        try:
            await asyncio.wait_for(self._discard_until_eof(), _LINGER_SECONDS)
        except (asyncio.TimeoutError, OSError):
            pass
        self.abandon()

    async def _discard_until_eof(self) -> None:
        while await self.loop.sock_recv(self.sock, _READ_SIZE):
            pass

    def abandon(self) -> None:
        if self.open:
            self.open = False
            self.sock.close()
