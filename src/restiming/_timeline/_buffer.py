"""The resource timing buffers of a timeline's owner (current Resource Timing, not
Level 1): records drained from the ring stay packed in a ``Store`` (primary buffer)
or a list (secondary buffer); the buffer-full task follows the processing model
exactly (fire while full, copy what fits, stop when nothing moved, drop the rest);
queries and ``drain()`` hand out lazily decoded entries, sorted by start time.
https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
"""

from __future__ import annotations

import struct

from restiming._binding import lib
from restiming._entry import PerformanceResourceTiming
from restiming._exceptions import RestimingError
from restiming._fields import FLAGS_OFFSET, RECORD, URL_LEN_OFFSET
from restiming._ring import iter_records
from restiming._timeline._events import ResourceTimingBufferFullEvent, _report

__all__ = ["BufferPolicy", "SECONDARY_BUFFER_CAPACITY", "ONATTR"]

#: Entries the secondary buffer holds while a buffer-full task is pending; beyond
#: that, entries still reach observers but are dropped from the buffer and counted.
SECONDARY_BUFFER_CAPACITY = 10_000

_FLAG_SECONDARY = lib.RT_FLAG_SECONDARY
_FLAG_DROPPED = lib.RT_FLAG_DROPPED
_SIZE, _FLAGS, _URL_LEN = RECORD.size, FLAGS_OFFSET, URL_LEN_OFFSET
_start_ns = struct.Struct("<q").unpack_from  # start_time is the record's first field
_lazy = PerformanceResourceTiming._lazy
ONATTR = object()  # marks where the onresourcetimingbufferfull handler sits among listeners


def _by_start(item) -> int:
    return _start_ns(item[0], item[1])[0]


class BufferPolicy:
    """Mixin of ``Performance`` (the owner side). Every method here that touches the
    ring runs with ``_lock`` held, after checking the timeline is open."""

    __slots__ = ()

    def _pump(self) -> None:
        """Move every committed record from the ring into the buffers (lock held),
        handing new entries to the observers."""
        want = bool(self._observers)
        fresh: list = []
        ring, store, origin = self._ring, self._store, self._origin_ns
        while True:
            chunk = store.tail()
            buf, start = chunk[0], chunk[1]
            used, count, klass = ring.drain_into(buf, start)
            if used < 0:  # the next record does not fit in this chunk's rest
                big = bytearray(ring.max_record + 16)
                used, count, klass = ring.drain_into(big, 0, 1)
                if used < 0:
                    raise RestimingError("ring record larger than its own limit")
                data = bytes(big[:used])
            elif count == 0:
                if self._stuck is not None and self._stuck.check(ring):
                    continue  # stepped over a dead producer's record: drain on
                break
            elif klass == 0:
                chunk[1] = start + used
                chunk[2] += count
                store.count += count
                if want:
                    fresh.extend(_lazy(buf, off, origin) for off, _ in iter_records(buf, start, start + used))
                continue
            else:
                data = bytes(buf[start : start + used])
            # An oversized primary record, a secondary run, or records dropped for lack
            # of overflow room (those still reach observers).
            for off, n in iter_records(data, 0, len(data)):
                rec_flags = int.from_bytes(data[off + _FLAGS : off + _FLAGS + 2], "little")
                if rec_flags & _FLAG_DROPPED:
                    pass
                elif rec_flags & _FLAG_SECONDARY:
                    self._secondary.append(data[off - 8 : off + ((n + 7) & ~7)])
                else:
                    store.append_packed(data[off - 8 : off + ((n + 7) & ~7)], 1)
                if want:
                    fresh.append(_lazy(data, off, origin))
        if self._secondary and not self._task_queued:
            # Overflow that arrived after the last task ended, or set by a worker.
            ring.try_set_pending()
            self._queue(self._buffer_full_task, "_task_queued")
        if fresh:
            for observer in self._observers:
                observer._enqueue(fresh)
            self._queue(self._observer_task, "_observer_task_queued")

    def _buffer_full_task(self) -> None:
        """Resource Timing "fire a buffer full event", then clear the pending flag."""
        lock = self._lock
        try:
            while True:
                with lock:
                    if self._closed:  # queued before close(): the ring is gone
                        return
                    self._pump()
                    before = len(self._secondary)
                    if before == 0:
                        break
                    stats = self._ring.stats()
                if stats.primary >= stats.limit:
                    self._dispatch_full()
                with lock:
                    if self._closed:
                        return
                    ring = self._ring
                    self._pump()
                    moved = ring.claim_primary(len(self._secondary))
                    for packed in self._secondary[:moved]:
                        self._store.append_packed(packed, 1)
                    del self._secondary[:moved]
                    ring.release_secondary(moved)
                    after = len(self._secondary)
                    if before <= after:
                        self._dropped_by_task += after
                        ring.release_secondary(after)
                        self._secondary.clear()
                        break
        finally:
            with lock:
                self._task_queued = False
                if not self._closed:
                    self._ring.clear_pending()

    def _dispatch_full(self) -> None:
        event = ResourceTimingBufferFullEvent(self)
        for listener in list(self._listeners):
            handler = self._onfull if listener is ONATTR else listener
            if handler is None:
                continue
            try:
                handler(event)
            except Exception as exc:
                _report(exc, "a resourcetimingbufferfull handler")

    def _observer_task(self) -> None:
        with self._lock:
            self._observer_task_queued = False
            if self._closed:  # queued before close(): the ring is gone
                return
            self._pump()
            observers = list(self._observers)
        for observer in observers:
            observer._deliver()

    # ------------------------------------------------------------- queries
    def _buffered_entries(self) -> list[PerformanceResourceTiming]:
        """The primary buffer's entries, sorted, without pumping (lock held)."""
        items = list(self._store.records())
        items.sort(key=_by_start)
        origin = self._origin_ns
        return [_lazy(buf, off, origin) for buf, off in items]

    def get_entries(self) -> list[PerformanceResourceTiming]:
        """Every entry in the buffer, sorted by ``start_time``."""
        self._check_queryable()
        self._sync()
        with self._lock:
            return self._buffered_entries()

    def get_entries_by_type(self, type: str) -> list[PerformanceResourceTiming]:
        self._check_queryable()
        if type != "resource":
            self._sync()
            return []
        return self.get_entries()

    def get_entries_by_name(self, name: str, type: str | None = None) -> list[PerformanceResourceTiming]:
        self._check_queryable()
        self._sync()
        if type is not None and type != "resource":
            return []
        key = name.encode("utf-8", "surrogateescape")
        n = len(key)
        with self._lock:
            items = [
                (buf, off) for buf, off in self._store.records()
                if int.from_bytes(buf[off + _URL_LEN : off + _URL_LEN + 4], "little") == n
                and buf[off + _SIZE : off + _SIZE + n] == key
            ]
        items.sort(key=_by_start)
        return [_lazy(buf, off, self._origin_ns) for buf, off in items]

    def clear_resource_timings(self) -> None:
        """Empty the primary buffer (entries in the secondary buffer stay there)."""
        self._check_queryable()
        self._sync()
        with self._lock:
            self._check_open()
            self._ring.release_primary(self._store.clear())

    def set_resource_timing_buffer_size(self, max_size: int) -> None:
        """Set the buffer size; a size below the current count removes nothing."""
        self._check_queryable()
        check_size(max_size)
        with self._lock:
            self._check_open()
            self._ring.set_limit(max_size)

    @property
    def resource_timing_buffer_size(self) -> int:
        with self._lock:
            self._check_open()
            return int(self._ring.stats().limit)

    def drain(self) -> list[PerformanceResourceTiming]:
        """Take and remove every buffered entry (primary and secondary), sorted by
        start_time. Entries are decoded on first access, so taking them is cheap."""
        chunks, secondary = self._take_all()
        items = [(buf, off) for buf, used, _ in chunks for off, _n in iter_records(buf, 0, used)]
        items.extend((packed, 8) for packed in secondary)
        items.sort(key=_by_start)
        origin = self._origin_ns
        return [_lazy(buf, off, origin) for buf, off in items]

    def _drain_raw(self) -> list[tuple[bytearray | bytes, int, int]]:
        """Like ``drain()`` but packed: take and remove every buffered record and return
        ``(buffer, start, end)`` spans of length-prefixed records (``_ring.iter_records``
        reads them; ``_fields.RECORD`` unpacks each body), in arrival order, unsorted.
        For consumers that aggregate without building an entry per record (the bench)."""
        chunks, secondary = self._take_all()
        spans = [(buf, 0, used) for buf, used, _ in chunks if used]
        spans.extend((packed, 0, len(packed)) for packed in secondary)
        return spans

    def _take_all(self) -> tuple[list, list]:
        """Empty both buffers and give their slots back: (the store's chunks as
        [buffer, used, count], the secondary buffer's packed records)."""
        self._check_queryable()
        self._sync()
        with self._lock:
            self._check_open()
            chunks, secondary = self._store.chunks, self._secondary
            self._ring.release_primary(self._store.clear())
            self._ring.release_secondary(len(secondary))
            self._secondary = []
        return chunks, secondary

    @property
    def dropped_entries(self) -> int:
        """Entries that never made it into the buffer: no room in the secondary
        buffer, dropped by the buffer-full task, or (workers) by a full backlog."""
        if self._is_owner():
            try:
                self._sync()
            except RestimingError:
                pass  # closed meanwhile
        with self._lock:
            if self._closed:
                return self._dropped_at_close
            return int(self._ring.stats().dropped_overflow) + self._dropped_by_task + self._backlog.dropped


def check_size(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"buffer size must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"buffer size must be >= 0, got {n}")
