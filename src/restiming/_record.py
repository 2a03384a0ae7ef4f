"""The low-level recording API: ``perf.begin(url)`` → ``rec.stamp(phase)`` → ``rec.finish()``.

A ``Recorder`` owns one C ``rt_record``; ``stamp()`` asks the C core to read the
clock and write the slot itself, so no Python int crosses per stamp. ``finish()``
applies the opaque shape for a failed Timing-Allow-Origin check or a network error,
packs the strings after the record and publishes it into the timeline's ring.
https://w3c.github.io/resource-timing/#sec-mark-resource-timing
"""

from __future__ import annotations

from typing import Sequence

from restiming._binding import ensure, ffi, lib
from restiming._exceptions import RestimingError
from restiming._fields import ERROR_KINDS, OPAQUE_ZEROED_STAMPS, SLOT, STAMPS, TEXTS
from restiming._servertiming import PerformanceServerTiming, format_server_timing

__all__ = ["Recorder"]

_OPAQUE_SLOTS = tuple(SLOT[s] for s in OPAQUE_ZEROED_STAMPS)
_START, _FETCH, _END = SLOT["start_time"], SLOT["fetch_start"], SLOT["response_end"]
_REUSED, _TAO_FAILED = lib.RT_FLAG_REUSED, lib.RT_FLAG_TAO_FAILED
_stamp = lib.rt_record_stamp
_INTENDED = SLOT["intended_start"]
_SCS = SLOT["secure_connection_start"]
_REUSE_SLOTS = tuple(SLOT[s] for s in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end"))
_MAX_U32 = 2**32 - 1
_MAX_I64 = 2**63 - 1
_COUNT_LIMITS = (("response_status", 999), ("encoded_body_size", _MAX_I64), ("decoded_body_size", _MAX_I64),
                 ("bytes_sent", _MAX_I64), ("bytes_received", _MAX_I64), ("connection_id", _MAX_U32))


def _text(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    # NUL separates the strings of a record; it cannot occur in HTTP fields.
    return value.replace("\0", "\ufffd")


def _count(value: object, what: str, limit: int = _MAX_I64) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value > limit:
        raise ValueError(f"{what} must be between 0 and {limit}, got {value}")
    return value


class Recorder:
    """An entry being recorded. Not thread-safe: one fetch, one owner."""

    __slots__ = ("_perf", "_rec", "name", "initiator_type", "_finished", "_url_b", "stamps")

    def __init__(self, perf, name: str, initiator_type: str) -> None:
        self._perf = perf
        self.name = name
        self.initiator_type = initiator_type
        self._finished = False
        self._url_b = name.encode("utf-8", "surrogateescape")
        rec = ffi.new("rt_record *")
        ensure(_stamp(rec, _START), "stamping start_time")
        rec.stamp[_FETCH] = rec.stamp[_START]  # same stamp without a redirect
        self._rec = rec
        self.stamps = rec.stamp  # indexable by SLOT; the engine writes C-clock ns here

    def stamp(self, phase: str) -> None:
        """Stamp ``phase`` now with the C clock (no Python round trip for the value)."""
        try:
            slot = SLOT[phase]
        except KeyError:
            raise ValueError(f"unknown phase {phase!r}; phases are {', '.join(STAMPS)}") from None
        status = _stamp(self._rec, slot)
        if status:
            ensure(status, f"stamping {phase}")

    def set(self, phase: str, ns: int) -> None:
        """Set ``phase`` to a monotonic nanosecond value (0 clears it)."""
        try:
            slot = SLOT[phase]
        except KeyError:
            raise ValueError(f"unknown phase {phase!r}") from None
        self._rec.stamp[slot] = _count(ns, phase)

    def get(self, phase: str) -> int:
        """The monotonic nanosecond value of ``phase`` (0 when unset)."""
        return int(self._rec.stamp[SLOT[phase]])

    def clear(self, *phases: str) -> None:
        """Unset ``phases`` (a redirect's next hop describes itself afresh)."""
        stamp = self._rec.stamp
        for phase in phases:
            stamp[SLOT[phase]] = 0

    def mark_reused(self, tls: bool) -> None:
        """The stamps of a reused connection (SPEC §3): DNS and connect equal to
        fetch_start; secure_connection_start too for TLS, 0 for plain HTTP."""
        stamp = self._rec.stamp
        fetch = stamp[_FETCH]
        for slot in _REUSE_SLOTS:
            stamp[slot] = fetch
        stamp[_SCS] = fetch if tls else 0

    def copy(self, dst: str, src: str) -> None:
        """Make ``dst`` the very same stamp as ``src`` (for the spec's equalities)."""
        self._rec.stamp[SLOT[dst]] = self._rec.stamp[SLOT[src]]

    @property
    def finished(self) -> bool:
        return self._finished

    def finish(
        self,
        *,
        response_status: int = 0,
        encoded_body_size: int = 0,
        decoded_body_size: int = 0,
        next_hop_protocol: str = "",
        content_type: str = "",
        content_encoding: str = "",
        delivery_type: str = "",
        server_timing: str | Sequence[PerformanceServerTiming] = "",
        error: str | None = None,
        error_message: str | None = None,
        connection_id: int = 0,
        connection_reused: bool = False,
        remote_address: str = "",
        tls_version: str = "",
        bytes_sent: int = 0,
        bytes_received: int = 0,
        intended_start: int | None = None,
        timing_allow_passed: bool = True,
        proxy: str = "",
    ):
        """Stamp ``response_end`` if unset, queue the entry, and return it.

        ``error`` (one of the documented kinds) or ``timing_allow_passed=False`` give
        the opaque shape: redirect, DNS, connect, TLS, request, interim and response
        start stamps and the sizes zeroed, no protocol or Server-Timing, and
        ``fetch_start == start_time``. A network error also has ``response_status == 0``.
        """
        if self._finished:
            raise RestimingError(f"entry for {self.name!r} was already finished")
        if error is not None and error not in ERROR_KINDS:
            raise ValueError(f"error must be one of {', '.join(ERROR_KINDS)} or None, got {error!r}")
        rec = self._rec
        if not rec.stamp[_END]:
            ensure(_stamp(rec, _END), "stamping response_end")
        if type(server_timing) is not str:
            server_timing = format_server_timing(server_timing)
        counts = (response_status, encoded_body_size, decoded_body_size, bytes_sent, bytes_received,
                  connection_id)
        # Fast path: plain ints in range; anything else gets the exact error.
        if (type(response_status) is not int or type(encoded_body_size) is not int
                or type(decoded_body_size) is not int or type(bytes_sent) is not int
                or type(bytes_received) is not int or type(connection_id) is not int
                or min(counts) < 0 or response_status > 999 or connection_id > _MAX_U32
                or max(counts) > _MAX_I64):
            for value, (what, limit) in zip(counts, _COUNT_LIMITS):
                _count(value, what, limit)
        flags = _REUSED if connection_reused else 0
        if error is not None or not timing_allow_passed:
            flags |= _TAO_FAILED
            for slot in _OPAQUE_SLOTS:
                rec.stamp[slot] = 0
            rec.stamp[_FETCH] = rec.stamp[_START]
            encoded_body_size = decoded_body_size = 0
            next_hop_protocol = server_timing = ""
            if error is not None:
                response_status = 0
        rec.response_status = response_status
        rec.encoded_body_size = encoded_body_size
        rec.decoded_body_size = decoded_body_size
        rec.bytes_sent = bytes_sent
        rec.bytes_received = bytes_received
        rec.connection_id = connection_id
        if intended_start is not None:
            rec.stamp[_INTENDED] = _count(intended_start, "intended_start")
        rec.flags = flags
        texts = (self.initiator_type, next_hop_protocol, content_type, content_encoding, delivery_type,
                 server_timing, error or "", error_message or "", remote_address, tls_version, proxy)
        try:
            text = "\0".join(texts)
        except TypeError:
            texts = tuple(_text(t, what) for t, what in zip(texts, TEXTS))
            text = "\0".join(texts)
        if text.count("\0") != len(texts) - 1:
            # NUL separates the strings of a record; it cannot occur in HTTP fields.
            text = "\0".join(t.replace("\0", "\ufffd") for t in texts)
        text_b = text.encode("utf-8", "surrogateescape")
        url = self._url_b
        rec.url_len = len(url)
        rec.text_len = len(text_b)
        self._finished = True
        return self._perf._publish(rec, url + text_b)
