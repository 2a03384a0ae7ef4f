"""Packed ring records as Arrow record batches: the bulk path of ``restiming[ray]``.

Strategy: one ``struct.unpack_from`` per record (the bench aggregator's cost), the
tuples transposed by ``zip`` and every column built by Arrow in one call. One column
per entry attribute (``_fields.FIELDS``): times are integer nanoseconds since the
batch's time origin (null where the stamp did not happen, where an entry says 0),
``duration`` integer nanoseconds, strings dictionary-encoded. Every row also names
where it was measured (``host``, ``pid``, ``actor``) and that host's time origin as a
(realtime, monotonic) pair, so rows from several hosts go on one wall-clock axis
explicitly (``origin_realtime_ns + start_time``) while each duration stays the
difference of two stamps taken on one host. Warm-up records are left out.
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from restiming._entry import _FLAG_REUSED, _FLAG_TAO_FAILED
from restiming._fields import FIELDS, RECORD, STAMPS, TEXTS, TRANSFER_SIZE_OVERHEAD
from restiming._servertiming import parse_server_timing

__all__ = ["SCHEMA", "records_to_batch", "batch_to_dicts", "WHERE_COLUMNS", "ParquetSink"]

_INT = {"transfer_size": pa.int64(), "encoded_body_size": pa.int64(), "decoded_body_size": pa.int64(),
        "response_status": pa.int32(), "connection_id": pa.int64(), "bytes_sent": pa.int64(),
        "bytes_received": pa.int64()}
_DICT = pa.dictionary(pa.int32(), pa.string())


def _type(name: str, kind: str) -> pa.DataType:
    if kind in ("time", "float"):
        return pa.int64()
    if kind == "int":
        return _INT[name]
    if kind == "bool":
        return pa.bool_()
    return _DICT  # str, optstr, server_timing (the header's text)


#: Where each row was measured; constant within a batch.
WHERE_COLUMNS = (("host", _DICT), ("pid", pa.int32()), ("actor", pa.int32()),
                 ("origin_realtime_ns", pa.int64()), ("origin_monotonic_ns", pa.int64()))
SCHEMA = pa.schema([pa.field(name, _type(name, kind)) for name, _, kind in FIELDS]
                   + [pa.field(n, t) for n, t in WHERE_COLUMNS])
_SIZE = RECORD.size
_NTEXTS = len(TEXTS)
# The record after its stamps: 4 sizes, connection id, status, flags, url and text lengths.
_NS = len(STAMPS)
_URL_LEN, _TEXT_LEN = _NS + 7, _NS + 8
_WARMUP = b"warmup"
_NULL64 = pa.scalar(None, pa.int64())


def _strings(values: list[bytes], nullable: bool = False) -> pa.Array:
    arr = pa.array(values, pa.binary())
    try:
        arr = arr.cast(pa.string())
    except pa.ArrowInvalid:  # not UTF-8: decode as the entries do
        arr = pa.array([v.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode()
                        for v in values], pa.string())
    if nullable:
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return arr.dictionary_encode()


def _since(raw: pa.Array, origin_ns: int) -> pa.Array:
    """Monotonic stamps -> ns since the origin, null for 0 (did not happen)."""
    return pc.if_else(pc.equal(raw, 0), _NULL64, pc.subtract(raw, origin_ns))


def records_to_batch(spans, where: dict) -> tuple[pa.RecordBatch | None, int]:
    """Build one batch from drained ``(buf, start, end)`` spans. ``where``: host, pid,
    actor, origin_realtime_ns, origin_monotonic_ns. Returns (batch or None when every
    record was warm-up or there were none, records read)."""
    unpack, from_bytes = RECORD.unpack_from, int.from_bytes
    values, urls, texts = [], [], []
    read = 0
    for buf, start, end in spans:
        pos = start
        while pos < end:
            n = from_bytes(buf[pos:pos + 8], "little")
            off = pos + 8
            pos = off + ((n + 7) & ~7)
            read += 1
            v = unpack(buf, off)
            p = off + _SIZE
            url_end = p + v[_URL_LEN]
            t = bytes(buf[url_end:url_end + v[_TEXT_LEN]]).split(b"\0")
            if t[0] == _WARMUP:
                continue
            if len(t) != _NTEXTS:
                t = (t + [b""] * _NTEXTS)[:_NTEXTS]
            values.append(v)
            urls.append(bytes(buf[p:url_end]))
            texts.append(t)
    if not values:
        return None, read
    rows = len(values)
    cols = list(zip(*values))
    text_cols = dict(zip(TEXTS, zip(*texts)))
    origin = where["origin_monotonic_ns"]
    stamp = {name: pa.array(cols[i], pa.int64()) for i, name in enumerate(STAMPS)}
    start_raw, end_raw = stamp["start_time"], stamp["response_end"]
    fir, frh = stamp["first_interim_response_start"], stamp["final_response_headers_start"]
    enc, dec, sent, recv, conn_id, status, flags = (pa.array(c) for c in cols[_NS:_NS + 7])
    opaque = pc.not_equal(pc.bit_wise_and(flags, _FLAG_TAO_FAILED), 0)
    out = {
        "name": _strings(urls),
        "entry_type": pa.array(["resource"] * rows, pa.string()).dictionary_encode(),
        "duration": pc.if_else(pc.equal(end_raw, 0), 0, pc.subtract(end_raw, start_raw)),
        "worker_start": pa.nulls(rows, pa.int64()),
        "response_start": _since(pc.if_else(pc.equal(fir, 0), frh, fir), origin),
        "transfer_size": pc.if_else(opaque, 0, pc.add(enc, TRANSFER_SIZE_OVERHEAD)),
        "encoded_body_size": enc, "decoded_body_size": dec, "response_status": status,
        "render_blocking_status": pa.array(["non-blocking"] * rows, pa.string()).dictionary_encode(),
        "connection_id": conn_id, "connection_reused": pc.not_equal(pc.bit_wise_and(flags, _FLAG_REUSED), 0),
        "bytes_sent": sent, "bytes_received": recv,
    }
    for name in STAMPS:
        out.setdefault(name, _since(stamp[name], origin))
    for name in TEXTS:
        out[name] = _strings(list(text_cols[name]), nullable=name in ("error", "error_message"))
    host = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([where["host"]]))
    out["host"] = host
    for name, typ in WHERE_COLUMNS[1:]:
        out[name] = pa.array([where[name]] * rows, typ)
    arrays = [out[f.name].cast(f.type) if out[f.name].type != f.type else out[f.name] for f in SCHEMA]
    meta = {f"restiming.{k}": str(where[k]) for k in ("host", "pid", "actor", "origin_realtime_ns",
                                                       "origin_monotonic_ns")}
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA.with_metadata(meta)), read


def batch_to_dicts(batch: pa.RecordBatch, realtime_origin_ns: int) -> list[dict]:
    """Rows as ``PerformanceResourceTiming.to_dict()`` gives them (times in ms), on
    the timeline whose origin is ``realtime_origin_ns`` (the driver's), for the
    NDJSON/CSV/HAR outputs. Placed by the hosts' wall clocks; durations untouched."""
    rows = batch.to_pylist()
    out = []
    for r in rows:
        shift = r["origin_realtime_ns"] - realtime_origin_ns
        d = {}
        for name, _, kind in FIELDS:
            v = r[name]
            if kind == "time":
                v = (v + shift) / 1e6 if v is not None else 0.0
            elif kind == "float":
                v = v / 1e6
            elif kind == "server_timing":
                v = [m.to_json() for m in parse_server_timing(v)] if v else []
            elif kind == "str" and v is None:
                v = ""
            d[name] = v
        out.append(d)
    return out


class ParquetSink:
    """Every shipped batch into ``DIR/actor-<i>.parquet`` (one file per actor, so a
    dead actor's file is still complete up to its last batch); read them together with
    ``pyarrow.dataset.dataset(DIR)``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._writers: dict = {}
        self.rows = 0

    def write(self, key, batch) -> None:
        writer = self._writers.get(key)
        if writer is None:
            path = os.path.join(self.directory, f"actor-{key}.parquet" if isinstance(key, int) else f"{key}.parquet")
            writer = self._writers[key] = pq.ParquetWriter(path, batch.schema)
        writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
