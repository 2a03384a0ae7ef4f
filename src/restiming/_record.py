"""The low-level recording API: ``perf.begin(url)`` → ``rec.stamp(phase)`` → ``rec.finish()``.

Stamps are plain ints (CLOCK_MONOTONIC ns read by the C clock, ``lib.rt_now_ns``) in
the list ``rec.stamps``, indexed by ``_fields.SLOT``: the engine writes them directly.
``finish()`` applies the opaque shape for a failed Timing-Allow-Origin check or a
network error, packs the fixed record (``_fields.RECORD``) and its strings into one
bytes object and hands it to the timeline, which publishes it with one C call.
Strings too large for a record are bounded first (``_limits``), never refused.
https://w3c.github.io/resource-timing/#sec-mark-resource-timing
"""

from __future__ import annotations

import struct
from typing import Sequence

from restiming._binding import lib
from restiming._exceptions import RestimingError
from restiming._fields import ERROR_KINDS, OPAQUE_ZEROED_STAMPS, RECORD, SLOT, STAMPS, TEXTS
from restiming._limits import FAST_TEXT_BOUND, MAX_SERVER_TIMING_BYTES, MAX_TEXT_BYTES, fit_strings
from restiming._servertiming import PerformanceServerTiming, format_server_timing

__all__ = ["Recorder", "PHASES"]

_now = lib.rt_now_ns
_pack = RECORD.pack
_OPAQUE_SLOTS = tuple(SLOT[s] for s in OPAQUE_ZEROED_STAMPS)
_START, _FETCH, _END = SLOT["start_time"], SLOT["fetch_start"], SLOT["response_end"]
_FIRST_INTERIM, _FINAL = SLOT["first_interim_response_start"], SLOT["final_response_headers_start"]
_REUSED, _TAO_FAILED = lib.RT_FLAG_REUSED, lib.RT_FLAG_TAO_FAILED
_INTENDED = SLOT["intended_start"]
_SCS = SLOT["secure_connection_start"]
_REUSE_SLOTS = tuple(SLOT[s] for s in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end"))
_ZEROS = [0] * (len(STAMPS) - 2)
_NSEP = len(TEXTS) - 1
_MAX_U32 = 2**32 - 1
_MAX_I64 = 2**63 - 1
_COUNT_LIMITS = (("response_status", 999), ("encoded_body_size", _MAX_I64), ("decoded_body_size", _MAX_I64),
                 ("bytes_sent", _MAX_I64), ("bytes_received", _MAX_I64), ("connection_id", _MAX_U32))

# Every timestamp attribute of an entry the low-level API accepts. Two have no slot:
# ``response_start`` is derived (SPEC §3: the first non-zero of the first interim
# response and the final response headers), so writing it writes the final
# response's first byte, and reading it gives the derived value; ``worker_start`` is
# always 0 (no service workers): reading gives 0, writing anything else is an error.
_RESPONSE_START = "response_start"
_WORKER_START = "worker_start"
#: Names ``stamp/set/get/clear/copy`` accept.
PHASES = STAMPS + (_RESPONSE_START, _WORKER_START)
_WRITE_SLOT = dict(SLOT, response_start=_FINAL)


_ST = TEXTS.index("server_timing")


def _size(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def _bounded(url: str, texts: tuple, budget: int) -> tuple[bytes, bytes]:
    """The slow path of ``finish()``: apply the bounds of ``_limits`` if one is exceeded."""
    sizes = [_size(t) for t in texts]
    if (_size(url) + sum(sizes) + len(texts) - 1 > budget or sizes[_ST] > MAX_SERVER_TIMING_BYTES
            or any(n > MAX_TEXT_BYTES for i, n in enumerate(sizes) if i != _ST)):
        url, texts = fit_strings(url, list(texts), budget)
    return url.encode("utf-8", "surrogateescape"), "\0".join(texts).encode("utf-8", "surrogateescape")


def _opaque(stamps: list) -> None:
    """The opaque shape's stamps (failed Timing-Allow-Origin check or network error):
    the detailed ones zeroed, fetch_start back to start_time."""
    for slot in _OPAQUE_SLOTS:
        stamps[slot] = 0
    stamps[_FETCH] = stamps[_START]


def _unknown(phase: object) -> ValueError:
    return ValueError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")


def _write_slot(phase: str) -> int:
    try:
        return _WRITE_SLOT[phase]
    except (KeyError, TypeError):
        if phase == _WORKER_START:
            raise ValueError("worker_start is always 0: restiming has no service workers") from None
        raise _unknown(phase) from None


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
    """An entry being recorded. Not thread-safe: one fetch, one owner.

    ``stamps`` is a list of ``len(_fields.STAMPS)`` ints, CLOCK_MONOTONIC ns from the
    C clock, 0 = unset; ``begin()`` sets ``start_time`` and ``fetch_start`` to the
    same stamp. The engine may write ``rec.stamps[SLOT[name]] = ns`` directly."""

    __slots__ = ("_perf", "stamps", "name", "initiator_type", "_finished", "_url_b")

    def __init__(self, perf, name: str, initiator_type: str) -> None:
        now = _now()
        self.stamps = [now, now] + _ZEROS  # start_time == fetch_start: one stamp
        self._perf = perf
        self.name = name
        self.initiator_type = initiator_type
        self._finished = False
        self._url_b = name.encode("utf-8", "surrogateescape")

    def stamp(self, phase: str) -> None:
        """Stamp ``phase`` now with the C clock. Any timestamp attribute of the entry
        is accepted; ``response_start`` stamps the final response's first byte
        (``final_response_headers_start``): the entry's ``response_start`` is that
        stamp unless an interim response was stamped first (SPEC §3)."""
        try:
            slot = _WRITE_SLOT[phase]
        except (KeyError, TypeError):
            slot = _write_slot(phase)
        self.stamps[slot] = _now()

    def set(self, phase: str, ns: int) -> None:
        """Set ``phase`` to a monotonic nanosecond value (0 clears it); ``response_start``
        as in ``stamp()``; ``worker_start`` only to 0."""
        if phase == _WORKER_START and ns == 0:
            return
        self.stamps[_write_slot(phase)] = _count(ns, phase)

    def get(self, phase: str) -> int:
        """The monotonic nanosecond value of ``phase`` (0 when unset); for
        ``response_start`` the entry's value: the first non-zero of
        ``first_interim_response_start`` and ``final_response_headers_start``."""
        try:
            return self.stamps[SLOT[phase]]
        except (KeyError, TypeError):
            if phase == _RESPONSE_START:
                return self.stamps[_FIRST_INTERIM] or self.stamps[_FINAL]
            if phase == _WORKER_START:
                return 0
            raise _unknown(phase) from None

    def clear(self, *phases: str) -> None:
        """Unset ``phases`` (a redirect's next hop describes itself afresh)."""
        stamps = self.stamps
        for phase in phases:
            if phase == _WORKER_START:
                continue
            stamps[_write_slot(phase)] = 0

    def mark_reused(self, tls: bool) -> None:
        """The stamps of a reused connection (SPEC §3): DNS and connect equal to
        fetch_start; secure_connection_start too for TLS, 0 for plain HTTP."""
        stamps = self.stamps
        fetch = stamps[_FETCH]
        for slot in _REUSE_SLOTS:
            stamps[slot] = fetch
        stamps[_SCS] = fetch if tls else 0

    def copy(self, dst: str, src: str) -> None:
        """Make ``dst`` the very same stamp as ``src`` (for the spec's equalities)."""
        value = self.get(src)
        if dst == _WORKER_START:
            if value:
                raise ValueError("worker_start is always 0: restiming has no service workers")
            return
        self.stamps[_write_slot(dst)] = value

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
        stamps = self.stamps
        if not stamps[_END]:
            stamps[_END] = _now()
        if type(server_timing) is not str:
            server_timing = format_server_timing(server_timing)
        # Fast path: plain ints, none negative, the status within 3 digits; the upper
        # bounds of the other counts are checked by the packing below. Anything else
        # gets the exact error.
        if (type(response_status) is not int or type(encoded_body_size) is not int
                or type(decoded_body_size) is not int or type(bytes_sent) is not int
                or type(bytes_received) is not int or type(connection_id) is not int
                or response_status > 999
                or (response_status | encoded_body_size | decoded_body_size | bytes_sent | bytes_received
                    | connection_id) < 0):
            self._check_counts(response_status, encoded_body_size, decoded_body_size, bytes_sent,
                               bytes_received, connection_id)
        if intended_start is not None:
            stamps[_INTENDED] = _count(intended_start, "intended_start")
        flags = _REUSED if connection_reused else 0
        if error is not None or not timing_allow_passed:
            flags |= _TAO_FAILED
            _opaque(stamps)
            encoded_body_size = decoded_body_size = 0
            next_hop_protocol = server_timing = ""
            if error is not None:
                response_status = 0
        texts = (self.initiator_type, next_hop_protocol, content_type, content_encoding, delivery_type,
                 server_timing, error or "", error_message or "", remote_address, tls_version, proxy)
        try:
            text = "\0".join(texts)
        except TypeError:
            texts = tuple(_text(t, what) for t, what in zip(texts, TEXTS))
            text = "\0".join(texts)
        if text.count("\0") != _NSEP:
            # NUL separates the strings of a record; it cannot occur in HTTP fields.
            texts = tuple(t.replace("\0", "\ufffd") for t in texts)
            text = "\0".join(texts)
        return self._publish(texts, text, encoded_body_size, decoded_body_size, bytes_sent, bytes_received,
                             connection_id, response_status, flags)

    def finish_response(self, status: int, encoded: int, decoded: int, protocol: str, content_type: str,
                        content_encoding: str, server_timing: str, connection_id: int, reused: bool,
                        remote_address: str, tls_version: str, sent: int, received: int,
                        intended_start: int | None, tao_passed: bool, proxy: str):
        """``finish()`` for the engine's own successful fetches: positional, and no
        type checks (the engine's counts are ints it computed). The string limits
        and the NUL rule still apply."""
        if self._finished:
            raise RestimingError(f"entry for {self.name!r} was already finished")
        stamps = self.stamps
        if not stamps[_END]:
            stamps[_END] = _now()
        if intended_start is not None:
            stamps[_INTENDED] = intended_start
        flags = _REUSED if reused else 0
        if not tao_passed:
            flags |= _TAO_FAILED
            _opaque(stamps)
            encoded = decoded = 0
            protocol = server_timing = ""
        texts = (self.initiator_type, protocol, content_type, content_encoding, "", server_timing, "", "",
                 remote_address, tls_version, proxy)
        text = "\0".join(texts)
        if text.count("\0") != _NSEP:  # an HTTP/2 peer's field value with a NUL
            texts = tuple(t.replace("\0", "\ufffd") for t in texts)
            text = "\0".join(texts)
        return self._publish(texts, text, encoded, decoded, sent, received, connection_id, status, flags)

    def _publish(self, texts: tuple, text: str, encoded_body_size: int, decoded_body_size: int, bytes_sent: int,
                 bytes_received: int, connection_id: int, response_status: int, flags: int):
        """Bound the strings, pack the record and publish it: one C call."""
        stamps = self.stamps
        text_b = text.encode("utf-8", "surrogateescape")
        url_b = self._url_b
        perf = self._perf
        if len(text_b) > FAST_TEXT_BOUND or len(url_b) + len(text_b) > perf._string_budget:
            url_b, text_b = _bounded(self.name, texts, perf._string_budget)
        try:
            head = _pack(*stamps, encoded_body_size, decoded_body_size, bytes_sent, bytes_received,
                         connection_id, response_status, flags, len(url_b), len(text_b))
        except struct.error:
            self._check_counts(response_status, encoded_body_size, decoded_body_size, bytes_sent,
                               bytes_received, connection_id)
            self._check_stamps()
            raise
        self._finished = True
        return perf._publish(head + url_b + text_b)

    @staticmethod
    def _check_counts(*counts: object) -> None:
        for value, (what, limit) in zip(counts, _COUNT_LIMITS):
            _count(value, what, limit)

    def _check_stamps(self) -> None:
        stamps = self.stamps
        if len(stamps) != len(STAMPS):
            raise ValueError(f"rec.stamps must have {len(STAMPS)} slots, has {len(stamps)}")
        for name, value in zip(STAMPS, stamps):
            _count(value, name)
