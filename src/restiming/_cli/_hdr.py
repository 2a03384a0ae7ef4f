"""HdrHistogram's standard exchange formats for the project's ``Histogram``.

Our ``Histogram`` uses HdrHistogram's layout exactly (same unit magnitude, sub-bucket
count and counts-array index for a given lowest/highest/digits), so encoding is a
straight walk over its counters:

- **V2 compressed histogram** (base64, as ``HdrHistogram.encodeIntoCompressedByteBuffer``
  writes it and the Python ``hdrhistogram`` package decodes it): a 40-byte big-endian
  header (cookie 0x1c849303, payload length, normalizing offset 0, significant digits,
  lowest, highest, int-to-double ratio 1.0) then the counts up to the last non-zero one
  as ZigZag LEB128 varints, a run of N > 1 zeros written as -N; the whole zlib-deflated
  behind an 8-byte header (cookie 0x1c849304, compressed length).
  https://github.com/HdrHistogram/HdrHistogram/blob/master/src/main/java/org/HdrHistogram/AbstractHistogram.java
- **Interval log** (``.hlog``, version 1.3): a header, then one line per interval
  ``Tag=total,start,length,max_ms,BLOB`` (times in seconds since ``StartTime``), as
  ``HistogramLogWriter`` writes it; read by ``hdrh.log.HistogramLogReader`` and
  HistogramLogAnalyzer.

A decoded histogram has exact counts but min, max and sum are only known to the
bucket (the format does not carry them): decoding takes them from the counters.
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from typing import TextIO

from ._hist import Histogram

__all__ = ["encode_histogram", "decode_histogram", "HlogWriter"]

_ENCODING_COOKIE = 0x1C849303
_COMPRESSION_COOKIE = 0x1C849304
_HEADER = struct.Struct(">iiiiqqd")
_OUTER = struct.Struct(">ii")


def _put_varint(out: bytearray, value: int) -> None:
    v = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF  # ZigZag
    for _ in range(8):
        if v < 0x80:
            out.append(v)
            return
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v & 0xFF)  # the 9th byte carries 8 bits


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    v, shift = 0, 0
    for i in range(9):
        b = data[pos]
        pos += 1
        if i == 8:
            v |= b << 56
            break
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    return (v >> 1) ^ -(v & 1), pos


def encode_histogram(h: Histogram) -> str:
    """``h`` as a base64 V2 compressed histogram."""
    counts = h._counts
    last = len(counts) - 1
    while last >= 0 and not counts[last]:
        last -= 1
    payload = bytearray()
    i = 0
    while i <= last:
        c = counts[i]
        if c:
            _put_varint(payload, c)
            i += 1
            continue
        j = i
        while j <= last and not counts[j]:
            j += 1
        _put_varint(payload, -(j - i) if j - i > 1 else 0)
        i = j
    head = _HEADER.pack(_ENCODING_COOKIE, len(payload), 0, h.digits, h.lowest, h.highest, 1.0)
    packed = zlib.compress(head + bytes(payload))
    return base64.b64encode(_OUTER.pack(_COMPRESSION_COOKIE, len(packed)) + packed).decode("ascii")


def decode_histogram(blob: str) -> Histogram:
    """A ``Histogram`` from a base64 V2 compressed histogram (ours or HdrHistogram's);
    min, max and the sum are the bucket values of the lowest and highest counters."""
    raw = base64.b64decode(blob)
    cookie, length = _OUTER.unpack_from(raw, 0)
    if cookie & ~0xF0 != _COMPRESSION_COOKIE:
        raise ValueError(f"not a V2 compressed histogram (cookie {cookie:#x})")
    data = zlib.decompress(raw[8:8 + length])
    cookie, plen, offset, digits, lowest, highest, _ratio = _HEADER.unpack_from(data, 0)
    if cookie & ~0xF0 != _ENCODING_COOKIE or offset != 0:
        raise ValueError(f"unsupported histogram encoding (cookie {cookie:#x}, offset {offset})")
    h = Histogram(max(int(lowest), 1), int(highest), int(digits))
    counts = h._counts
    pos, end, i = _HEADER.size, _HEADER.size + plen, 0
    total = 0
    while pos < end:
        v, pos = _get_varint(data, pos)
        if v < 0:
            i -= v
            continue
        if v:
            if i >= len(counts):
                raise ValueError("histogram counts beyond its own layout")
            counts[i] = v
            total += v
        i += 1
    h.count = total
    if total:
        nz = [k for k, c in enumerate(counts) if c]
        h._min = h._range(nz[0])[0]
        h._max = h._range(nz[-1])[1]
        h._sum = sum(((lambda r: (r[0] + r[1]) // 2)(h._range(k))) * counts[k] for k in nz)
    return h


class HlogWriter:
    """An HdrHistogram interval log: one ``total`` histogram per interval."""

    def __init__(self, f: TextIO, start_epoch_s: float, tag: str = "total") -> None:
        self.f = f
        self.tag = tag
        self.start = start_epoch_s  # may be moved until the first interval is written
        self._head = False

    def _header(self) -> None:
        if self._head:
            return
        self._head = True
        start = self.start
        self.f.write("#[Histogram log format version 1.3]\n")
        self.f.write(f"#[StartTime: {start:.3f} (seconds since epoch), "
                     f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime(start))}]\n")
        self.f.write(f"#[BaseTime: {start:.3f} (seconds since epoch)]\n")
        self.f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def interval(self, start_s: float, length_s: float, h: Histogram) -> None:
        """One interval starting ``start_s`` seconds after the log's start."""
        self._header()
        self.f.write(f"Tag={self.tag},{start_s:.3f},{length_s:.3f},{h.max / 1e6:.3f},{encode_histogram(h)}\n")

    def close(self) -> None:
        self._header()
        self.f.close()
