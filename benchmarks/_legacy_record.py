"""Named baseline for bench_record.py: the recording path as it was before issue 7,
kept here only to be measured in the same run as the current one. It holds a cffi
``rt_record`` per entry, makes one C call per stamp, sets every field through cffi
attribute access, copies the record out with ``ffi.buffer`` and publishes with
``rt_ring_publish`` (no lock: the old path had the close() race of issue 8 finding 13).
"""

from __future__ import annotations

from restiming._binding import ensure, ffi, lib
from restiming._entry import PerformanceResourceTiming
from restiming._fields import ERROR_KINDS, OPAQUE_ZEROED_STAMPS, SLOT, STAMPS

_OPAQUE_SLOTS = tuple(SLOT[s] for s in OPAQUE_ZEROED_STAMPS)
_START, _FETCH, _END = SLOT["start_time"], SLOT["fetch_start"], SLOT["response_end"]
_REUSED, _TAO_FAILED = lib.RT_FLAG_REUSED, lib.RT_FLAG_TAO_FAILED
_stamp = lib.rt_record_stamp
_MAX_U32 = 2**32 - 1
_MAX_I64 = 2**63 - 1


class LegacyRecorder:
    __slots__ = ("_perf", "_rec", "name", "initiator_type", "_finished", "_url_b")

    def __init__(self, perf, name: str, initiator_type: str = "fetch") -> None:
        self._perf = perf
        self.name = name
        self.initiator_type = initiator_type
        self._finished = False
        self._url_b = name.encode("utf-8", "surrogateescape")
        rec = ffi.new("rt_record *")
        ensure(_stamp(rec, _START), "stamping start_time")
        rec.stamp[_FETCH] = rec.stamp[_START]
        self._rec = rec

    def stamp(self, phase: str) -> None:
        try:
            slot = SLOT[phase]
        except KeyError:
            raise ValueError(f"unknown phase {phase!r}; phases are {', '.join(STAMPS)}") from None
        status = _stamp(self._rec, slot)
        if status:
            ensure(status, f"stamping {phase}")

    def finish(self, *, response_status=0, encoded_body_size=0, decoded_body_size=0, next_hop_protocol="",
               content_type="", content_encoding="", delivery_type="", server_timing="", error=None,
               error_message=None, connection_id=0, connection_reused=False, remote_address="",
               tls_version="", bytes_sent=0, bytes_received=0, intended_start=None,
               timing_allow_passed=True):
        if self._finished:
            raise RuntimeError("already finished")
        if error is not None and error not in ERROR_KINDS:
            raise ValueError(error)
        rec = self._rec
        if not rec.stamp[_END]:
            ensure(_stamp(rec, _END), "stamping response_end")
        counts = (response_status, encoded_body_size, decoded_body_size, bytes_sent, bytes_received,
                  connection_id)
        if (type(response_status) is not int or type(encoded_body_size) is not int
                or type(decoded_body_size) is not int or type(bytes_sent) is not int
                or type(bytes_received) is not int or type(connection_id) is not int
                or min(counts) < 0 or response_status > 999 or connection_id > _MAX_U32
                or max(counts) > _MAX_I64):
            raise ValueError(counts)
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
        rec.flags = flags
        texts = (self.initiator_type, next_hop_protocol, content_type, content_encoding, delivery_type,
                 server_timing, error or "", error_message or "", remote_address, tls_version)
        text = "\0".join(texts)
        if text.count("\0") != len(texts) - 1:
            text = "\0".join(t.replace("\0", "\ufffd") for t in texts)
        text_b = text.encode("utf-8", "surrogateescape")
        url = self._url_b
        rec.url_len = len(url)
        rec.text_len = len(text_b)
        self._finished = True
        strings = url + text_b
        perf = self._perf
        # The old Performance._publish: copy the record out, check, one publish call.
        packed = bytes(ffi.buffer(rec)) + strings
        if len(packed) > perf._ring.max_record:
            raise RuntimeError("too big")
        result = lib.rt_ring_publish(perf._ring.ptr, rec, strings, len(strings))
        if result < 0:
            ensure(result, "publishing a record")
        if result & lib.RT_PUB_BECAME_FULL:
            perf._queue(perf._buffer_full_task, "_task_queued")
        return PerformanceResourceTiming._lazy(packed, 0, perf._origin_ns)
