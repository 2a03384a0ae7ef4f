"""Immutable resource timing entries, decoded from ring records.

An entry is a slotted object holding one tuple of attribute values; the
properties, ``to_json()`` and the exports are all generated from
``_fields.FIELDS``. Entries are built only when someone looks (a query, an
observer, ``finish()``): the timeline keeps packed records, not objects.
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from restiming._fields import (
    ATTRIBUTES,
    FIELDS,
    INDEX,
    RECORD,
    SPEC_KEYS,
    TEXTS,
    TRANSFER_SIZE_OVERHEAD,
)
from restiming._servertiming import PerformanceServerTiming, parse_server_timing

__all__ = ["PerformanceResourceTiming", "PerformanceServerTiming", "decode_record"]

_FLAG_REUSED = 0x4
_FLAG_TAO_FAILED = 0x8
_NTEXTS = len(TEXTS)
_new = object.__new__


class PerformanceResourceTiming:
    """One fetch's Resource Timing entry. Times are ms relative to the time origin;
    0 means "not exposed / did not happen". Immutable.

    Entries from ``finish()``, queries, ``drain()`` and observers keep a reference
    to their packed record and decode it on first access, so a consumer that never
    looks at an entry never pays for decoding it.
    """

    # _d: the attribute values (a tuple, FIELDS order) once decoded; before that the
    # packed record's location, [buf, offset, origin_ns] (a list: never a tuple).
    __slots__ = ("_d",)
    _d: tuple | list

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"PerformanceResourceTiming is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PerformanceResourceTiming is immutable (tried to delete {name!r})")

    @classmethod
    def _from_values(cls, values: tuple) -> "PerformanceResourceTiming":
        entry = _new(cls)
        _set_d(entry, tuple(values))
        return entry

    @classmethod
    def _lazy(cls, buf, off: int, origin_ns: int) -> "PerformanceResourceTiming":
        """An entry decoded on first access from the record at ``buf[off:]``; ``buf``
        is never written at that place again (a Store chunk only grows)."""
        entry = _new(cls)
        _set_d(entry, [buf, off, origin_ns])
        return entry

    @property
    def _decoded(self) -> bool:
        return type(self._d) is tuple

    def _values(self) -> tuple:
        d = self._d
        if type(d) is not tuple:
            d = _decode_values(d[0], d[1], d[2])
            _set_d(self, d)
        return d

    def to_json(self) -> dict[str, Any]:
        """The spec's toJSON(): camelCase keys, server_timing as a list of dicts."""
        v = self._values()
        out: dict[str, Any] = {}
        for name, key in SPEC_KEYS:
            value = v[INDEX[name]]
            if name == "server_timing":
                value = [m.to_json() for m in value]
            out[key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every attribute, snake_case, extensions included (for exports)."""
        out = dict(zip(ATTRIBUTES, self._values()))
        out["server_timing"] = [m.to_json() for m in out["server_timing"]]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PerformanceResourceTiming):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        v = self._values()
        return (
            f"<PerformanceResourceTiming name={v[0]!r} start_time={v[2]:.3f} "
            f"duration={v[3]:.3f} status={v[INDEX['response_status']]}"
            + (f" error={v[INDEX['error']]!r}" if v[INDEX["error"]] else "")
            + ">"
        )

    def __reduce__(self):
        return (PerformanceResourceTiming._from_values, (self._values(),))


_set_d = PerformanceResourceTiming._d.__set__


def _attribute(index: int, doc: str) -> property:
    get = itemgetter(index)

    def fget(self):
        d = self._d
        return get(d if type(d) is tuple else self._values())

    return property(fget, doc=doc)


for _i, (_name, _key, _kind) in enumerate(FIELDS):
    setattr(PerformanceResourceTiming, _name, _attribute(_i, f"{_key or _name} ({_kind})"))
del _i, _name, _key, _kind


def decode_record(buf, off: int, origin_ns: int) -> PerformanceResourceTiming:
    """Build the entry for the packed record at ``buf[off:]`` (see _fields.RECORD), decoded
    now: ``buf`` may be reused afterwards."""
    return PerformanceResourceTiming._from_values(_decode_values(buf, off, origin_ns))


def _decode_values(buf, off: int, origin_ns: int) -> tuple:
    """The attribute values (FIELDS order) of the packed record at ``buf[off:]``."""
    v = RECORD.unpack_from(buf, off)
    (start, fetch, rs, re_, dls, dle, cs, ce, scs, reqs, reqe, fir, frh, rend, intended, pcs, pce,
     enc, dec, sent, recv, conn_id, status, flags, url_len, text_len) = v
    p = off + RECORD.size
    url = bytes(buf[p : p + url_len]).decode("utf-8", "surrogateescape")
    p += url_len
    texts = bytes(buf[p : p + text_len]).decode("utf-8", "surrogateescape").split("\0")
    if len(texts) != _NTEXTS:
        texts = (texts + [""] * _NTEXTS)[:_NTEXTS]
    (initiator, protocol, ctype, cenc, delivery, st_raw, error, error_message,
     remote, tls, proxy) = texts

    # The 17 stamps in record order, in ms; one comprehension, not a call per stamp
    # (this runs once per fetch, for the entry the caller gets back).
    (start_ms, fetch_ms, rs_ms, re_ms, dls_ms, dle_ms, cs_ms, ce_ms, scs_ms, reqs_ms, reqe_ms, fir_ms,
     frh_ms, end_ms, intended_ms, pcs_ms, pce_ms) = [(ns - origin_ns) / 1e6 if ns else 0.0 for ns in v[:17]]
    opaque = bool(flags & _FLAG_TAO_FAILED)
    values = (
        url,
        "resource",
        start_ms,
        end_ms - start_ms if rend else 0.0,
        initiator,
        delivery,
        protocol,
        0.0,  # worker_start: no service workers here
        rs_ms,
        re_ms,
        fetch_ms,
        dls_ms,
        dle_ms,
        cs_ms,
        ce_ms,
        scs_ms,
        reqs_ms,
        fir_ms,
        frh_ms,
        fir_ms if fir else frh_ms,
        end_ms,
        0 if opaque else enc + TRANSFER_SIZE_OVERHEAD,
        enc,
        dec,
        status,
        "non-blocking",
        ctype,
        cenc,
        parse_server_timing(st_raw) if st_raw else (),
        error or None,
        error_message or None,
        conn_id,
        bool(flags & _FLAG_REUSED),
        remote,
        tls,
        reqe_ms,
        sent,
        recv,
        intended_ms,
        proxy,
        pcs_ms,
        pce_ms,
    )
    return values
