"""Content decoding with hard limits: gzip and deflate always, br and zstd when
their packages are installed (brotli >= 1.2, whose decoder takes an output cap).

Every coding is decoded incrementally with a cap on the output of each call, so
memory stays bounded whatever the input: zlib's ``max_length``, brotli's
``output_buffer_limit``, and zstd fed in 128-byte slices (a zstd block expands at
most 32,768 times, so one call yields at most 4 MiB). A bomb is stopped when the
decoded size passes ``max_decompressed_bytes`` or the decoded/encoded ratio passes
``max_decompression_ratio`` (once past 1 MiB). gzip bodies may hold several members
(all are decoded; trailing bytes that are not a member are ignored, as browsers
do); "deflate" is zlib-wrapped or raw, told apart by the zlib header check on its
first two bytes; a compressed stream that ends before its end marker is a
``ProtocolError``. Unknown codings are passed through undecoded.
"""

from __future__ import annotations

import zlib

from restiming._exceptions import DecompressionLimit, ProtocolError

__all__ = ["Decoder", "supported_encodings", "content_encoding_attribute", "decodes"]

try:  # optional
    import brotli  # type: ignore

    brotli.Decompressor().process(b"", output_buffer_limit=1)  # brotli < 1.2 has no output cap
except (ImportError, TypeError, AttributeError):  # pragma: no cover - depends on the environment
    brotli = None
try:  # optional
    import zstandard  # type: ignore
except ImportError:  # pragma: no cover
    zstandard = None

#: Largest piece of output one decoder call may produce.
_PIECE = 65536
_ZSTD_SLICE = 128
_SLICE = 4096
_RATIO_FLOOR = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

_DECODED = frozenset(("gzip", "x-gzip", "deflate") + (("br",) if brotli is not None else ())
                     + (("zstd",) if zstandard is not None else ()))


def supported_encodings() -> tuple[str, ...]:
    names = ["gzip", "deflate"]
    if brotli is not None:
        names.append("br")
    if zstandard is not None:
        names.append("zstd")
    return tuple(names)


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


def _is_zlib_header(two: bytes) -> bool:
    """RFC 1950: CM = 8 (deflate), window <= 32 KiB, header checksum."""
    cmf, flg = two[0], two[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0


class _Zlib:
    """gzip (every member) or deflate (zlib-wrapped or raw)."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None
        self._held = b""  # deflate: first byte kept until the header can be checked
        self._trailing = False  # gzip: bytes after the last member that are not one

    def feed(self, data: bytes):
        if self._d is None:
            data = self._held + data
            if len(data) < 2:
                self._held = data
                return
            self._held = b""
            self._d = zlib.decompressobj(zlib.MAX_WBITS if _is_zlib_header(data[:2]) else -zlib.MAX_WBITS)
        while data and not self._trailing:
            d = self._d
            yield d.decompress(data, _PIECE)
            while d.unconsumed_tail:
                yield d.decompress(d.unconsumed_tail, _PIECE)
            data = b""
            if d.eof and d.unused_data:
                rest = d.unused_data
                if self._gzip and rest[:2] == _GZIP_MAGIC[: len(rest[:2])]:
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member
                    data = rest
                else:
                    self._trailing = True

    def flush(self):
        d = self._d
        if d is None:
            if self._held:
                raise ProtocolError("the compressed body ended before its end marker")
            return
        tail = d.flush()
        if tail:
            yield tail
        if not d.eof:
            raise ProtocolError("the compressed body ended before its end marker")


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes):
        d = self._d
        yield d.process(data, output_buffer_limit=_PIECE)
        while not d.can_accept_more_data():
            yield d.process(b"", output_buffer_limit=_PIECE)

    def flush(self):
        if not self._d.is_finished():
            raise ProtocolError("the compressed body ended before its end marker")
        return ()


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes):
        d = self._d
        for i in range(0, len(data), _ZSTD_SLICE):
            if d.eof:
                return  # bytes after the frame: ignored, as after a gzip stream
            yield d.decompress(data[i : i + _ZSTD_SLICE])

    def flush(self):
        if not self._d.eof:
            raise ProtocolError("the compressed body ended before its end marker")
        return ()


def _make(coding: str):
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(coding)
    if coding == "br" and brotli is not None:
        return _Brotli()
    if coding == "zstd" and zstandard is not None:
        return _Zstd()
    return None


def _codings(content_encoding: str) -> list[str]:
    """The codings of a Content-Encoding value, in order, ``identity`` left out."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    return [c for c in codings if c and c != "identity"]


def decodes(content_encoding: str | None) -> bool:
    """True when a body with this Content-Encoding is delivered decoded (every coding
    is one restiming decodes); otherwise it is passed through as it came."""
    codings = _codings(content_encoding or "")
    return bool(codings) and all(c in _DECODED for c in codings)


class Decoder:
    """Decodes a body given its Content-Encoding field value."""

    def __init__(self, content_encoding: str, max_bytes: int, max_ratio: float) -> None:
        stages = [_make(c) for c in reversed(_codings(content_encoding))]
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
        except (DecompressionLimit, ProtocolError):
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
        # The ratio compares the output with the input handed over so far, in 4 KiB
        # slices: counting a whole network read up front would let one 256 KiB read
        # of a bomb expand to 256 MiB before the ratio could object.
        step = _SLICE if self._ratio else max(len(data), 1)
        for start in range(0, len(data), step):
            part = data[start : start + step] if step < len(data) else data
            self._consumed += len(part)
            for piece in self._run(part, self._stages):
                self._check(len(piece))
                yield piece

    def flush(self):
        """The rest of the output at the end of the body; ``ProtocolError`` if a
        compressed stream was cut short."""
        if not self._stages:
            return
        for i, stage in enumerate(self._stages):
            try:
                tails = list(stage.flush())
            except ProtocolError:
                raise
            except Exception as exc:
                raise ProtocolError(f"cannot decode the response body: {exc}") from exc
            for tail in tails:
                if tail:
                    for piece in self._run(tail, self._stages[i + 1 :]):
                        self._check(len(piece))
                        yield piece
