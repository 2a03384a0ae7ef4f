"""A scripted forward proxy: authentication, refusals, and a recording of what it saw.

Strategy: a thread with its own asyncio loop (as ``ScriptedServer``). Each connection's
request head is read and recorded (``heads``: the raw bytes, so tests can check where
credentials went). ``handler(head) -> int | None`` decides: a status (407, 403, 502...)
is answered and the connection closed; ``None`` accepts: a CONNECT gets
``200 Connection established`` and bytes are piped both ways to the target; a request
in absolute-form is forwarded to its origin over a fresh connection and piped back.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["ScriptedProxy"]

_REASONS = {403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway"}


class ScriptedProxy:
    def __init__(self, handler=None) -> None:
        self.handler = handler or (lambda head: None)
        self.heads: list[bytes] = []
        self.port = 0
        self._loop = None
        self._thread = None
        self._server = None
        self._started = threading.Event()
        self._writers: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ScriptedProxy":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def boot():
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._started.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.close()

    async def _serve(self, reader, writer) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        self.heads.append(head)
        status = self.handler(head)
        if status is not None:
            reason = _REASONS.get(status, "Refused")
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n"
                         f"Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if method == b"CONNECT":
            host, _, port = target.decode().rpartition(":")
            upstream_r, upstream_w = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            rest = target.decode().split("://", 1)[1]
            authority, _, path = rest.partition("/")
            host, _, port = authority.rpartition(":")
            upstream_r, upstream_w = await asyncio.open_connection(host, int(port or 80))
            lines = head.split(b"\r\n")
            first = b" ".join((method, b"/" + path.encode(), lines[0].rsplit(b" ", 1)[1]))
            kept = [line for line in lines[1:] if not line.lower().startswith(b"proxy-authorization:")]
            upstream_w.write(b"\r\n".join([first, *kept]))
        self._writers.add(upstream_w)
        await asyncio.gather(self._pipe(reader, upstream_w), self._pipe(upstream_r, writer),
                             return_exceptions=True)

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        if self._loop is None:
            return

        def shutdown():
            self._server.close()
            for w in self._writers:
                w.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(5)
        self._loop = None
