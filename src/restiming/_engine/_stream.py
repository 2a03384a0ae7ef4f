"""Streaming responses: ``client.stream(url)`` returns a context manager whose
response yields the body in decoded chunks; the entry is recorded when the body
ends or the stream is closed, whichever comes first (SPEC §3 "Streaming").

The body iterator is a plain async iterator, not an async generator, so a stream
abandoned mid-body leaves nothing for the event loop to finalize.
"""

from __future__ import annotations

from ._client import _OURS, Client, _Exchange
from ._decoding import Decoder
from ._models import StreamResponse

__all__ = ["StreamContext"]


class _StreamBody:
    """Reads a stream response's body for the caller and records the entry at the end."""

    __slots__ = ("client", "ex", "head", "decoder", "done", "_pieces")

    def __init__(self, client: Client, ex: _Exchange, head, decoder: Decoder) -> None:
        self.client = client
        self.ex = ex
        self.head = head
        self.decoder = decoder
        self.done = False
        # Decoded pieces of the current encoded chunk, pulled one at a time: one
        # chunk of a compressed body can decode to far more than we want in memory.
        self._pieces = None

    def iterate(self, response: StreamResponse):
        return _BodyIterator(self, response)

    async def next_chunks(self, response: StreamResponse) -> list[bytes] | None:
        if self.done:
            return None
        ex = self.ex
        try:
            while True:
                if self._pieces is not None:
                    for piece in self._pieces:
                        if piece:
                            return [piece]
                    self._pieces = None
                chunk = await ex.conn.read_body_chunk(ex.timeout.read)
                if chunk is None:
                    tail = list(self.decoder.flush())
                    self.done = True
                    response.entry = self.client._finish(ex, self.head, self.decoder, complete=True)
                    return tail or None
                self._pieces = iter(self.decoder.feed(chunk))
        except BaseException as exc:
            self.done = True
            self._pieces = None
            raise self.client._fail(ex, exc) from (None if isinstance(exc, _OURS) else exc)

    async def close(self, response: StreamResponse) -> None:
        if self.done:
            return
        self.done = True
        self._pieces = None
        response.entry = self.client._finish(self.ex, self.head, self.decoder, complete=False)


class _BodyIterator:
    """An async iterator (not a generator: nothing left for the loop to finalize)."""

    __slots__ = ("_body", "_response", "_pending")

    def __init__(self, body: _StreamBody, response: StreamResponse) -> None:
        self._body = body
        self._response = response
        self._pending: list[bytes] = []

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        while not self._pending:
            chunks = await self._body.next_chunks(self._response)
            if chunks is None:
                raise StopAsyncIteration
            self._pending = [c for c in chunks if c]
        return self._pending.pop(0)


class StreamContext:
    __slots__ = ("_client", "_args", "_response")

    def __init__(self, client: Client, args: tuple) -> None:
        self._client = client
        self._args = args
        self._response: StreamResponse | None = None

    async def __aenter__(self) -> StreamResponse:
        client = self._client
        ex = client._begin(*self._args)
        try:
            head, decoder = await client._chain(ex)
        except BaseException as exc:
            raise client._fail(ex, exc) from (None if isinstance(exc, _OURS) else exc)
        body = _StreamBody(client, ex, head, decoder)
        self._response = StreamResponse(head.status, head.reason, head.headers, ex.url.href,
                                        head.http_version, body)
        return self._response

    async def __aexit__(self, *exc) -> None:
        if self._response is not None:
            await self._response.aclose()
