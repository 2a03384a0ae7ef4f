"""Streaming responses: ``client.stream(url)`` returns a context manager whose
response yields the body in decoded chunks; the entry is recorded when the body
ends or the stream is closed, whichever comes first (SPEC §3 "Streaming").

The connection buffers what arrives (reading pauses above its high-water mark);
this module takes encoded chunks from it when the caller asks and decodes them
piece by piece: one chunk of a compressed body can decode to far more than we
want in memory at once. The body iterator is a plain async iterator, not an async
generator, so a stream abandoned mid-body leaves nothing for the loop to finalize.
It works on the client it is given and imports nothing of the client layer.
"""

from __future__ import annotations

from ._models import Headers, StreamResponse

__all__ = ["StreamContext"]

_HTTP_VERSIONS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}


class _StreamBody:
    """Reads a stream response's body for the caller and records the entry at the end."""

    __slots__ = ("client", "ex", "conn", "decoder", "done", "_pieces")

    def __init__(self, client, ex, conn) -> None:
        self.client = client
        self.ex = ex
        self.conn = conn
        encoding = conn.fields.get(b"content-encoding")
        self.decoder = conn.make_decoder(b", ".join(encoding).decode("latin-1")) if encoding else None
        self.done = False
        self._pieces = None

    def iterate(self, response: StreamResponse):
        return _BodyIterator(self, response)

    async def next_piece(self, response: StreamResponse) -> bytes | None:
        """The next non-empty decoded piece, or ``None`` at the end."""
        if self.done:
            return None
        ex = self.ex
        decoder = self.decoder
        try:
            while True:
                if self._pieces is not None:
                    for piece in self._pieces:
                        if piece:
                            return piece
                    self._pieces = None
                chunk = await self.conn.next_chunk()
                if chunk is None:
                    tail = b"".join(decoder.flush()) if decoder is not None else b""
                    self.done = True
                    response.entry = self.client._finish(ex, self.conn, True, decoder)
                    return tail or None
                if decoder is None:
                    if chunk:
                        return chunk
                    continue
                self._pieces = iter(decoder.feed(chunk))
        except BaseException as exc:
            self.done = True
            self._pieces = None
            err = self.client._fail(ex, exc)
            if err is exc:
                raise
            raise err from exc

    async def close(self, response: StreamResponse) -> None:
        if self.done:
            return
        self.done = True
        self._pieces = None
        response.entry = self.client._finish(self.ex, self.conn, self.conn.state == 3 and not self.conn.chunks,
                                             self.decoder)


class _BodyIterator:
    """An async iterator (not a generator: nothing left for the loop to finalize)."""

    __slots__ = ("_body", "_response")

    def __init__(self, body: _StreamBody, response: StreamResponse) -> None:
        self._body = body
        self._response = response

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        piece = await self._body.next_piece(self._response)
        if piece is None:
            raise StopAsyncIteration
        return piece


class StreamContext:
    __slots__ = ("_client", "_args", "_response")

    def __init__(self, client, args: tuple) -> None:
        self._client = client
        self._args = args
        self._response: StreamResponse | None = None

    async def __aenter__(self) -> StreamResponse:
        client = self._client
        ex = await client._start_stream(self._args)
        try:
            conn = await client._follow(ex, await client._exchange(ex, True), True)
        except BaseException as exc:
            err = client._fail(ex, exc)
            if err is exc:
                raise
            raise err from exc
        head = conn.head
        body = _StreamBody(client, ex, conn)
        self._response = StreamResponse(head.status_code, head.reason.decode("latin-1"),
                                        Headers.from_h11(head.headers), ex.url.href,
                                        _HTTP_VERSIONS.get(head.http_version)
                                        or "HTTP/" + head.http_version.decode("ascii"), body)
        return self._response

    async def __aexit__(self, *exc) -> None:
        if self._response is not None:
            await self._response.aclose()
