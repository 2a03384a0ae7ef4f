"""Response objects the client hands back."""

from __future__ import annotations

from typing import Iterator

__all__ = ["Headers", "Response", "StreamResponse"]


class Headers:
    """Response header fields in wire order; lookups are case-insensitive.

    The engine asks each response for several fields: the first lookup builds a
    lower-case index in one pass, later ones are dictionary hits."""

    __slots__ = ("_fields", "_index")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._fields = items
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def from_h11(cls, fields) -> "Headers":
        """Wrap h11's header list as is; names and values are decoded on first use."""
        self = cls.__new__(cls)
        self._fields = fields
        self._index = None
        return self

    @property
    def _items(self) -> list[tuple[str, str]]:
        fields = self._fields
        if fields.__class__ is not list:
            fields = self._fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields.raw_items()]
        return fields

    def get(self, name: str, default: str | None = None) -> str | None:
        """All fields named ``name`` combined with ", " (RFC 9110), or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        index = self._index
        if index is None:
            index = self._index = {}
            for n, v in self._items:
                index.setdefault(n.lower(), []).append(v)
        return list(index.get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [n for n, _ in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Response:
    """A complete response: ``body`` is decoded; ``entry`` is its timing entry."""

    __slots__ = ("status", "reason", "headers", "body", "url", "entry", "http_version", "history")

    def __init__(self, status, reason, headers, body, url, entry, http_version, history=()) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.url = url
        self.entry = entry
        self.http_version = http_version
        #: (status, url) of each redirect response followed before this one.
        self.history = list(history)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


class StreamResponse:
    """A response whose body the caller reads in chunks. ``entry`` is ``None`` until
    the body ends or the stream is closed, whichever comes first."""

    __slots__ = ("status", "reason", "headers", "url", "entry", "http_version", "_body")

    def __init__(self, status, reason, headers, url, http_version, body) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.url = url
        self.http_version = http_version
        self.entry = None
        self._body = body

    def aiter_bytes(self):
        """Decoded body chunks, as they arrive."""
        return self._body.iterate(self)

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._body.close(self)

    def __repr__(self) -> str:
        return f"<StreamResponse {self.status} {self.url}>"
