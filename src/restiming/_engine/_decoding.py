"""Content decoding with hard limits: gzip and deflate always, br and zstd when
their packages are installed.

Decoders are fed encoded chunks and emit output in bounded pieces
(``max_length``), so a gzip bomb is stopped when the decoded size passes
``max_decompressed_bytes`` or the decoded/encoded ratio passes
``max_decompression_ratio`` (once past 1 MiB), without a large allocation.
The ratio compares the output with the input handed to the decoders so far, in
4 KiB slices: counting a whole network read up front would let one 256 KiB read
of a bomb expand to 256 MiB before the ratio could object.
Unknown codings are passed through undecoded.
"""

from __future__ import annotations

import zlib

from restiming._exceptions import DecompressionLimit, ProtocolError

__all__ = ["Decoder", "supported_encodings", "content_encoding_attribute"]

try:  # optional
    import brotli  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None
try:  # optional
    import zstandard  # type: ignore
except ImportError:  # pragma: no cover
    zstandard = None

_PIECE = 65536
_SLICE = 4096
_RATIO_FLOOR = 1 << 20


_DECODED = frozenset(("gzip", "x-gzip", "deflate") + (("br",) if brotli is not None else ())
                     + (("zstd",) if zstandard is not None else ()))


def supported_encodings() -> tuple[str, ...]:
    names = ["gzip", "deflate"]
    if brotli is not None:
        names.append("br")
    if zstandard is not None:
        names.append("zstd")
    return tuple(names)


class _Zlib:
    def __init__(self, coding: str) -> None:
        gzip = coding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        self._probe = not gzip  # "deflate": zlib-wrapped or raw, decided on the first bytes

    def feed(self, data: bytes):
        if self._probe:
            self._probe = False
            try:
                probe = zlib.decompressobj(zlib.MAX_WBITS)
                probe.decompress(data[:2], 0)
            except zlib.error:
                # "deflate" sent as raw DEFLATE (no zlib wrapper), as some servers do.
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        d = self._d
        chunk = d.decompress(data, _PIECE)
        yield chunk
        while d.unconsumed_tail:
            yield d.decompress(d.unconsumed_tail, _PIECE)

    def flush(self) -> bytes:
        return self._d.flush()


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes):
        # brotli exposes no output cap per call; 4 KiB input slices bound each call's
        # output by the format's maximum ratio times the slice.
        for i in range(0, len(data), _SLICE):
            yield self._d.process(data[i : i + _SLICE])

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes):
        for i in range(0, len(data), _SLICE):
            yield self._d.decompress(data[i : i + _SLICE])

    def flush(self) -> bytes:
        return b""


def content_encoding_attribute(values: list[bytes] | None) -> str:
    """The entry's ``contentEncoding`` from the raw Content-Encoding field values
    (SPEC §3, Fetch): "" without the field, "multiple" for more than one coding,
    the lower-cased coding when restiming decodes it, "@unknown" otherwise."""
    if not values:
        return ""
    codings = [c.strip(b" \t").lower() for v in values for c in v.split(b",")]
    codings = [c for c in codings if c]
    if not codings:
        return ""
    if len(codings) > 1:
        return "multiple"
    coding = codings[0].decode("latin-1")
    return coding if coding in _DECODED else "@unknown"


def _make(coding: str):
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(coding)
    if coding == "br" and brotli is not None:
        return _Brotli()
    if coding == "zstd" and zstandard is not None:
        return _Zstd()
    return None


class Decoder:
    """Decodes a body given its Content-Encoding field value."""

    def __init__(self, content_encoding: str, max_bytes: int, max_ratio: float) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        stages = [_make(c) for c in reversed(codings)]
        # An unknown coding anywhere means we cannot decode: pass the bytes through.
        self._stages = [] if any(s is None for s in stages) else stages
        self._max = max_bytes
        self._ratio = max_ratio
        self.encoded = 0
        self.decoded = 0
        self._consumed = 0  # encoded bytes handed to the decoders so far

    def _check(self, n: int) -> None:
        self.decoded += n
        if self.decoded > self._max:
            raise DecompressionLimit(f"decoded body exceeds max_decompressed_bytes={self._max}")
        if self._ratio and self.decoded > _RATIO_FLOOR and self.decoded > self._ratio * max(self._consumed, 1):
            raise DecompressionLimit(
                f"decoded body is over {self._ratio:g} times its encoded size (max_decompression_ratio)")

    def _run(self, data: bytes, stages: list):
        if not stages:
            yield data
            return
        head, rest = stages[0], stages[1:]
        try:
            for piece in head.feed(data):
                if piece:
                    yield from self._run(piece, rest)
        except DecompressionLimit:
            raise
        except Exception as exc:  # zlib.error, brotli.error, zstd.ZstdError
            raise ProtocolError(f"cannot decode the response body: {exc}") from exc

    def feed(self, data: bytes):
        """The decoded pieces of one encoded chunk (an iterable)."""
        self.encoded += len(data)
        if not self._stages:
            self.decoded += len(data)
            return (data,)
        return self._feed(data)

    def _feed(self, data: bytes):
        step = _SLICE if self._ratio else max(len(data), 1)
        for start in range(0, len(data), step):
            part = data[start : start + step] if step < len(data) else data
            self._consumed += len(part)
            for piece in self._run(part, self._stages):
                self._check(len(piece))
                yield piece

    def flush(self):
        if not self._stages:
            return
        for i, stage in enumerate(self._stages):
            try:
                tail = stage.flush()
            except Exception as exc:
                raise ProtocolError(f"cannot decode the response body: {exc}") from exc
            if tail:
                for piece in self._run(tail, self._stages[i + 1 :]):
                    self._check(len(piece))
                    yield piece
