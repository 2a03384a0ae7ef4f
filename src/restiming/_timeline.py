"""The performance timeline: time origin, the resource timing buffers, the event.

Strategy: producers (``Recorder.finish``, from any thread, or from worker
processes attached to a shared segment) publish packed records into the C ring,
which classifies each one into the primary buffer, the secondary buffer or a
counted drop, and says when the buffer became full. The owning ``Performance``
is the single consumer: it pulls records out ("pump") before every query and in
its loop callbacks, keeps them packed in a ``Store``, and builds entry objects
only for whoever looks. The buffer-full task follows the current Resource Timing
processing model exactly (fire while full, copy what fits, stop when nothing moved).

Callbacks (the buffer-full event, observers) run on the timeline's *home loop*:
the running loop of the thread that recorded, handed off with
``call_soon_threadsafe`` when another thread records. With no running loop they
run at the start of the next timeline call (a query, ``drain()``, ``flush()``).
https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
https://w3c.github.io/performance-timeline/#the-performance-interface
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import secrets
import threading
import time
import weakref
from operator import attrgetter
from typing import Callable

from restiming import clock
from restiming._binding import ensure, ffi, lib
from restiming._entry import PerformanceResourceTiming, decode_record
from restiming._fields import FLAGS_OFFSET, RECORD, URL_LEN_OFFSET
from restiming._exceptions import RestimingError, SharedTimelineError
from restiming._events import ResourceTimingBufferFullEvent, _report
from restiming._record import Recorder
from restiming._ring import Ring, Store, iter_records
from restiming._segments import _release_shared, remove_stale_segments

__all__ = ["Performance", "ResourceTimingBufferFullEvent", "LOCAL_RING_CELLS", "SHARED_RING_CELLS",
           "SECONDARY_BUFFER_CAPACITY", "WORKER_BACKLOG_LIMIT"]

#: Cells (64 bytes each) of a process-local ring: 1 MiB, about 3,000 records in flight.
LOCAL_RING_CELLS = 1 << 14
#: Cells of a shared ring: 8 MiB, about 25,000 records in flight between drains.
SHARED_RING_CELLS = 1 << 17
#: Entries the secondary buffer holds while a buffer-full task is pending; beyond
#: that, entries still reach observers but are dropped from the buffer and counted.
SECONDARY_BUFFER_CAPACITY = 10_000
#: Seconds between the owner's checks for worker records on a shared timeline while
#: observers or buffer-full listeners are registered (workers cannot wake the owner).
SHARED_POLL_INTERVAL = 0.01
#: Records a worker keeps locally while the shared ring is full (the parent is
#: behind); beyond that they are dropped and counted in the worker's dropped_entries.
WORKER_BACKLOG_LIMIT = 100_000

_PUB_RING_FULL = lib.RT_PUB_RING_FULL
_PUB_BECAME_FULL = lib.RT_PUB_BECAME_FULL
_FLAG_SECONDARY = lib.RT_FLAG_SECONDARY
_FLAG_DROPPED = lib.RT_FLAG_DROPPED
_BY_START = attrgetter("start_time")
_rt_publish = lib.rt_ring_publish
_SIZE, _FLAGS, _URL_LEN = RECORD.size, FLAGS_OFFSET, URL_LEN_OFFSET
# The current pid, refreshed in forked children (os.getpid() per publish is a syscall).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
_VALID_INITIATORS_HINT = "a non-empty str such as 'fetch'"


_ONATTR = object()  # marks where the onresourcetimingbufferfull handler sits among listeners


class Performance:
    """A timeline. ``buffer_size`` is the resource timing buffer size (spec default
    250); ``origin`` the document origin for Timing-Allow-Origin checks (``None``:
    every fetch passes); ``shared=True`` puts the ring in POSIX shared memory so
    worker processes can ``Performance.attach(perf.share_name)``."""

    def __init__(self, buffer_size: int = 250, origin: str | None = None, *, shared: bool = False,
                 ring_cells: int | None = None) -> None:
        _check_size(buffer_size)
        self._origin = _check_origin(origin)
        real, mono = clock.pair_ns()
        self._origin_ns = mono
        self.time_origin = real / 1e6
        cells = ring_cells or (SHARED_RING_CELLS if shared else LOCAL_RING_CELLS)
        self._pid = os.getpid()
        self._owner = True
        if shared:
            remove_stale_segments()
            name = f"/restiming-{os.getpid()}-{secrets.token_hex(6)}"
            self._ring = Ring.create_shared(name, cells, buffer_size, SECONDARY_BUFFER_CAPACITY, (real, mono))
            self._finalizer = weakref.finalize(self, _release_shared, self._ring, name, self._pid)
        else:
            self._ring = Ring.create(cells, buffer_size, SECONDARY_BUFFER_CAPACITY, (real, mono))
            self._finalizer = weakref.finalize(self, self._ring.close)
        self._init_consumer()
        self._adopt_running_loop()

    def _init_consumer(self) -> None:
        self._lock = threading.RLock()
        self._store = Store()
        self._secondary: list[bytes] = []
        self._dropped_by_task = 0
        self._backlog: collections.deque = collections.deque()
        self._backlog_dropped = 0
        self._listeners: list = []
        self._onfull: Callable | None = None
        self._observers: list = []
        self._home: asyncio.AbstractEventLoop | None = None
        self._deferred: list[Callable] = []
        self._task_queued = False
        self._observer_task_queued = False
        self._poll_armed = False
        self._closed = False

    # ----------------------------------------------------------- shared timelines
    @classmethod
    def attach(cls, name: str) -> "Performance":
        """Attach to the shared timeline ``name`` (from ``share_name``) in a worker.

        Entries recorded through the returned object land in the owner's timeline
        with the owner's time origin. It is write-only: queries raise
        ``SharedTimelineError``. Raises ``SharedTimelineError`` when the segment is
        missing or is not a restiming timeline.
        """
        if not isinstance(name, str) or not name:
            raise SharedTimelineError(f"shared timeline name must be a non-empty str, got {name!r}")
        if not name.startswith("/"):
            name = "/" + name
        self = cls.__new__(cls)
        self._ring = Ring.attach(name)
        stats = self._ring.stats()
        self._origin = None
        self._origin_ns = stats.origin_monotonic_ns
        self.time_origin = stats.origin_realtime_ns / 1e6
        self._pid = os.getpid()
        self._owner = False
        self._finalizer = weakref.finalize(self, self._ring.close)
        self._init_consumer()
        return self

    @property
    def share_name(self) -> str | None:
        """The shared segment's name to hand to workers (``None`` if not shared)."""
        return self._ring.name

    @property
    def origin(self) -> str | None:
        return self._origin

    def close(self, timeout: float = 5.0) -> None:
        """Release the ring. An owner unlinks its shared segment; an attached worker
        first flushes records it kept back while the ring was full (up to ``timeout``)."""
        if self._closed:
            return
        if not self._is_owner():
            deadline = time.monotonic() + timeout
            while self._backlog and time.monotonic() < deadline:
                self._flush_backlog()
                if self._backlog:
                    time.sleep(0.001)
            with self._lock:
                self._backlog_dropped += len(self._backlog)
                self._backlog.clear()
        # The ring goes away below; keep the count readable (a worker learns here
        # how many kept-back records close() could not deliver).
        self._dropped_at_close = int(self._ring.stats().dropped_overflow) + self._dropped_by_task \
            + self._backlog_dropped
        self._closed = True
        self._finalizer()

    def __enter__(self) -> "Performance":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _is_owner(self) -> bool:
        # A forked child holding the owner's object only produces; it never consumes.
        return self._owner and self._pid == _PID[0]

    def _check_open(self) -> None:
        if self._closed:
            raise RestimingError("this Performance was closed")

    def _check_queryable(self) -> None:
        self._check_open()
        if not self._is_owner():
            raise SharedTimelineError(
                "this timeline is attached from another process and is write-only; "
                "query the owning Performance")

    # ------------------------------------------------------------------ clock
    def now(self) -> float:
        """Milliseconds since ``time_origin``, from the C monotonic clock."""
        return (clock.now_ns() - self._origin_ns) / 1e6

    def to_ms(self, ns: int) -> float:
        """Convert a monotonic nanosecond stamp to this timeline's milliseconds."""
        return (ns - self._origin_ns) / 1e6 if ns else 0.0

    # -------------------------------------------------------------- recording
    def begin(self, url: str, initiator_type: str = "fetch") -> Recorder:
        """Start an entry for ``url``: ``start_time`` and ``fetch_start`` are stamped now."""
        self._check_open()
        if not isinstance(url, str) or not url:
            raise TypeError(f"url must be a non-empty str, got {url!r}")
        if not isinstance(initiator_type, str) or not initiator_type:
            raise TypeError(f"initiator_type must be {_VALID_INITIATORS_HINT}, got {initiator_type!r}")
        return Recorder(self, url, initiator_type)

    def _publish(self, rec, strings: bytes) -> PerformanceResourceTiming:
        packed = bytes(ffi.buffer(rec)) + strings
        if len(packed) > self._ring.max_record:
            raise RestimingError(
                f"entry of {len(packed)} bytes exceeds this timeline's record limit of "
                f"{self._ring.max_record} bytes (a URL that long needs a larger ring_cells)")
        if self._closed:
            raise RestimingError("this Performance was closed")
        if self._backlog:
            self._flush_backlog()
        if self._backlog:
            self._keep_back(packed)
        else:
            result = _rt_publish(self._ring.ptr, rec, strings, len(strings))
            if result < 0:
                ensure(result, "publishing a record")
            if result & _PUB_RING_FULL:
                if self._is_owner():
                    result = self._publish_after_pump(rec, strings)
                else:
                    self._keep_back(packed)
                    result = 0
            if result & _PUB_BECAME_FULL and self._is_owner():
                self._queue(self._buffer_full_task, "_task_queued")
        if self._observers and self._is_owner():
            self._queue(self._observer_task, "_observer_task_queued")
        return PerformanceResourceTiming._lazy(packed, self._origin_ns)

    def _publish_after_pump(self, rec, strings: bytes) -> int:
        # The owner is the consumer: make room by pulling records out, then retry.
        for _ in range(64):
            with self._lock:
                self._pump()
            result = self._ring.publish(rec, strings)
            if not result & _PUB_RING_FULL:
                return result
            time.sleep(0)  # another thread holds a reservation it has not committed yet
        raise RestimingError("ring stayed full while draining it; a producer stopped mid-publish")

    def _keep_back(self, packed: bytes) -> None:
        with self._lock:
            if len(self._backlog) >= WORKER_BACKLOG_LIMIT:
                self._backlog_dropped += 1
            else:
                self._backlog.append(packed)

    def _flush_backlog(self) -> None:
        with self._lock:
            while self._backlog:
                packed = self._backlog[0]
                rec = ffi.from_buffer("rt_record *", packed)
                if self._ring.publish(rec, packed[_SIZE:]) & _PUB_RING_FULL:
                    return
                self._backlog.popleft()

    def flush(self) -> None:
        """Pull pending records now and run due notifications when no loop will.

        Workers: retry records kept back while the shared ring was full."""
        if not self._is_owner():
            self._flush_backlog()
            return
        self._sync()

    # ------------------------------------------------------- consumer internals
    def _pump(self) -> None:
        """Move every committed record from the ring into the buffers (lock held),
        handing new entries to the observers."""
        want = bool(self._observers)
        fresh: list = []
        ring, store = self._ring, self._store
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
                break
            elif klass == 0:
                chunk[1] = start + used
                chunk[2] += count
                store.count += count
                if want:
                    fresh.extend(decode_record(buf, off, self._origin_ns)
                                 for off, _ in iter_records(buf, start, start + used))
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
                    fresh.append(decode_record(data, off, self._origin_ns))
        if self._secondary and not self._task_queued:
            # Overflow that arrived after the last task ended, or set by a worker.
            ring.try_set_pending()
            self._queue(self._buffer_full_task, "_task_queued")
        if fresh:
            for observer in self._observers:
                observer._enqueue(fresh)
            self._queue(self._observer_task, "_observer_task_queued")

    def _queue(self, callback: Callable, flag: str) -> None:
        """Queue ``callback`` once (``flag`` guards it) on the home loop, or defer it."""
        with self._lock:
            if getattr(self, flag):
                return
            setattr(self, flag, True)
            running = self._adopt_running_loop()
            home = self._home
            if home is None or home.is_closed():
                self._deferred.append(callback)
                return
            try:
                if home is running:
                    home.call_soon(callback)
                else:
                    home.call_soon_threadsafe(callback)
            except RuntimeError:  # closed between the check and the call
                self._deferred.append(callback)

    def _arm_poll(self) -> None:
        """On a shared owner, pull worker records periodically while someone listens."""
        if not self._ring.shared or not self._is_owner() or self._poll_armed or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._poll_armed = True
        loop.call_later(SHARED_POLL_INTERVAL, self._poll_tick)

    def _poll_tick(self) -> None:
        self._poll_armed = False
        if self._closed or not (self._observers or self._listeners):
            return
        with self._lock:
            self._pump()
        self._arm_poll()

    def _adopt_running_loop(self) -> asyncio.AbstractEventLoop | None:
        """Make the running loop the home loop when there is no usable one yet, and
        return the running loop (``None`` outside one).

        Also called where the owner sets up notifications (observe, listeners), so
        that records from producer threads are handed to that loop from the start
        instead of waiting, deferred, for the owner's next timeline call."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            home = self._home
            if home is None or home.is_closed() or not home.is_running():
                self._home = running
        return running

    def _sync(self) -> None:
        """Start of every owner-side call: pump, then run notifications nobody else will."""
        with self._lock:
            self._pump()
            home = self._home
            if home is not None and home.is_closed():
                # Callbacks sent to a loop that closed before running them are lost;
                # their flags are still set, so queue them again here.
                self._home = None
                for cb, flag in ((self._buffer_full_task, "_task_queued"),
                                 (self._observer_task, "_observer_task_queued")):
                    if getattr(self, flag) and cb not in self._deferred:
                        self._deferred.append(cb)
            self._adopt_running_loop()
            if not self._deferred:
                return
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            callbacks, self._deferred = self._deferred, []
            if running is not None:
                self._home = running
                for cb in callbacks:
                    running.call_soon(cb)
                return
        for cb in callbacks:
            cb()

    def _buffer_full_task(self) -> None:
        """Resource Timing "fire a buffer full event", then clear the pending flag."""
        if self._closed:  # queued before close(): the ring is gone
            return
        ring = self._ring
        try:
            while True:
                with self._lock:
                    self._pump()
                    before = len(self._secondary)
                if before == 0:
                    break
                stats = ring.stats()
                if stats.primary >= stats.limit:
                    self._dispatch_full()
                with self._lock:
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
            with self._lock:
                self._task_queued = False
                ring.clear_pending()

    def _dispatch_full(self) -> None:
        event = ResourceTimingBufferFullEvent(self)
        for listener in list(self._listeners):
            handler = self._onfull if listener is _ONATTR else listener
            if handler is None:
                continue
            try:
                handler(event)
            except Exception as exc:
                _report(exc, "a resourcetimingbufferfull handler")

    def _observer_task(self) -> None:
        if self._closed:  # queued before close(): the ring is gone
            return
        with self._lock:
            self._observer_task_queued = False
            self._pump()
            observers = list(self._observers)
        for observer in observers:
            observer._deliver()

    # ------------------------------------------------------------- public API
    def get_entries(self) -> list[PerformanceResourceTiming]:
        """Every entry in the buffer, sorted by ``start_time``."""
        self._check_queryable()
        self._sync()
        with self._lock:
            return self._buffered_entries()

    def _buffered_entries(self) -> list[PerformanceResourceTiming]:
        """The primary buffer's entries, sorted, without pumping (lock held)."""
        entries = [decode_record(buf, off, self._origin_ns) for buf, off in self._store.records()]
        entries.sort(key=_BY_START)
        return entries

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
            entries = [
                decode_record(buf, off, self._origin_ns)
                for buf, off in self._store.records()
                if int.from_bytes(buf[off + _URL_LEN : off + _URL_LEN + 4], "little") == n
                and buf[off + _SIZE : off + _SIZE + n] == key
            ]
        entries.sort(key=_BY_START)
        return entries

    def clear_resource_timings(self) -> None:
        """Empty the primary buffer (entries in the secondary buffer stay there)."""
        self._check_queryable()
        self._sync()
        with self._lock:
            self._ring.release_primary(self._store.clear())

    def set_resource_timing_buffer_size(self, max_size: int) -> None:
        """Set the buffer size; a size below the current count removes nothing."""
        self._check_queryable()
        _check_size(max_size)
        self._ring.set_limit(max_size)

    @property
    def resource_timing_buffer_size(self) -> int:
        self._check_open()
        return int(self._ring.stats().limit)

    def drain(self) -> list[PerformanceResourceTiming]:
        """Take and remove every buffered entry (primary and secondary), sorted by start_time."""
        self._check_queryable()
        self._sync()
        with self._lock:
            records = list(self._store.records())
            n = self._store.count
            entries = [decode_record(buf, off, self._origin_ns) for buf, off in records]
            entries.extend(decode_record(packed, 8, self._origin_ns) for packed in self._secondary)
            self._store.clear()
            self._ring.release_primary(n)
            self._ring.release_secondary(len(self._secondary))
            self._secondary = []
        entries.sort(key=_BY_START)
        return entries

    def _drain_raw(self) -> list[tuple[bytearray | bytes, int, int]]:
        """Like ``drain()`` but packed: take and remove every buffered record and return
        ``(buffer, start, end)`` spans of length-prefixed records (``_ring.iter_records``
        reads them; ``_fields.RECORD`` unpacks each body), in arrival order, unsorted.
        For consumers that aggregate without building an entry per record (the bench)."""
        self._check_queryable()
        self._sync()
        with self._lock:
            spans = [(buf, 0, used) for buf, used, _ in self._store.chunks if used]
            spans.extend((packed, 0, len(packed)) for packed in self._secondary)
            n = self._store.count
            self._store.clear()
            self._ring.release_primary(n)
            self._ring.release_secondary(len(self._secondary))
            self._secondary = []
        return spans

    @property
    def dropped_entries(self) -> int:
        """Entries that never made it into the buffer: no room in the secondary
        buffer, dropped by the buffer-full task, or (workers) by a full backlog."""
        if self._closed:
            return self._dropped_at_close
        if self._is_owner():
            self._sync()
        return int(self._ring.stats().dropped_overflow) + self._dropped_by_task + self._backlog_dropped

    def stats(self):
        """The ring's raw counters (for diagnostics and tests)."""
        self._check_open()
        return self._ring.stats()

    # --------------------------------------------------------------- events
    @property
    def onresourcetimingbufferfull(self) -> Callable | None:
        return self._onfull

    @onresourcetimingbufferfull.setter
    def onresourcetimingbufferfull(self, handler: Callable | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError("onresourcetimingbufferfull must be callable or None")
        self._adopt_running_loop()
        with self._lock:
            self._onfull = handler
            if handler is None:
                self._listeners = [item for item in self._listeners if item is not _ONATTR]
            elif _ONATTR not in self._listeners:
                self._listeners.append(_ONATTR)
        self._arm_poll()

    def add_event_listener(self, type: str, listener: Callable) -> None:
        if not callable(listener):
            raise TypeError("listener must be callable")
        if type != "resourcetimingbufferfull":
            raise ValueError(f"unknown event type {type!r}; only 'resourcetimingbufferfull'")
        self._adopt_running_loop()
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)
        self._arm_poll()

    def remove_event_listener(self, type: str, listener: Callable) -> None:
        with self._lock:
            if type == "resourcetimingbufferfull" and listener in self._listeners:
                self._listeners.remove(listener)

    def __repr__(self) -> str:
        kind = "shared" if self._ring.shared else "local"
        role = "" if self._is_owner() else " attached"
        return f"<Performance {kind}{role} time_origin={self.time_origin:.3f}>"


def _check_size(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"buffer size must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"buffer size must be >= 0, got {n}")


def _check_origin(origin: object) -> str | None:
    if origin is None:
        return None
    if not isinstance(origin, str) or "://" not in origin:
        raise ValueError(f"origin must look like 'scheme://host[:port]', got {origin!r}")
    return origin.rstrip("/")


# weakref.finalize runs at exit too, so shared segments are unlinked when the owner exits.
atexit.register(lambda: None)
