"""``Performance``: one timeline, joining its time origin, its ring, its buffers,
its loop scheduling and, for shared timelines, its segment and worker backlog.

Thread safety: every use of the ring, the publish of a record included, happens
with the timeline's lock held and after checking that it is open, so ``close()``
(which frees the ring under the same lock) can never free it under a writer.
https://w3c.github.io/performance-timeline/#the-performance-interface
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Callable

from restiming._binding import ensure, lib
from restiming._entry import PerformanceResourceTiming
from restiming._exceptions import RestimingError, SharedTimelineError
from restiming._fields import RECORD
from restiming._record import Recorder
from restiming._ring import Ring, Store
from restiming._timeline._backlog import WorkerBacklog
from restiming._timeline._buffer import ONATTR, SECONDARY_BUFFER_CAPACITY, BufferPolicy, check_size
from restiming._timeline._origin import TimeOrigin, check_origin
from restiming._timeline._scheduling import LoopScheduling
from restiming._timeline._shared import (
    STUCK_RECORD_TIMEOUT,
    StuckWatch,
    check_segment_name,
    new_segment_name,
    release_shared,
    remove_stale_segments,
)

__all__ = ["Performance", "LOCAL_RING_CELLS", "SHARED_RING_CELLS"]

#: Cells (64 bytes each) of a process-local ring: 1 MiB, about 3,000 records in flight.
LOCAL_RING_CELLS = 1 << 14
#: Cells of a shared ring: 8 MiB, about 25,000 records in flight between drains.
SHARED_RING_CELLS = 1 << 17

_PUB_RING_FULL = lib.RT_PUB_RING_FULL
_PUB_BECAME_FULL = lib.RT_PUB_BECAME_FULL
_publish_raw = lib.rt_ring_publish_raw
_new_entry = object.__new__
_set_entry = PerformanceResourceTiming._d.__set__
# The current pid, refreshed in forked children (os.getpid() per publish is a syscall).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
_VALID_INITIATORS_HINT = "a non-empty str such as 'fetch'"


def _close_local(ring: Ring, lock) -> None:
    with lock:
        ring.close()


class Performance(BufferPolicy, LoopScheduling):
    """A timeline. ``buffer_size`` is the resource timing buffer size (spec default
    250); ``origin`` the document origin for Timing-Allow-Origin checks (``None``:
    every fetch passes); ``shared=True`` puts the ring in POSIX shared memory so
    worker processes can ``Performance.attach(perf.share_name)``."""

    def __init__(self, buffer_size: int = 250, origin: str | None = None, *, shared: bool = False,
                 ring_cells: int | None = None) -> None:
        check_size(buffer_size)
        self._origin = check_origin(origin)
        self._set_time_origin(TimeOrigin.now())
        cells = ring_cells or (SHARED_RING_CELLS if shared else LOCAL_RING_CELLS)
        self._pid = os.getpid()
        self._owner = True
        self._init_consumer()
        pair = (self._time.realtime_ns, self._time.monotonic_ns)
        if shared:
            remove_stale_segments()
            name = new_segment_name()
            ring = Ring.create_shared(name, cells, buffer_size, SECONDARY_BUFFER_CAPACITY, pair)
            self._finalizer = weakref.finalize(self, release_shared, ring, name, self._pid, self._lock)
            self._stuck = StuckWatch()
        else:
            ring = Ring.create(cells, buffer_size, SECONDARY_BUFFER_CAPACITY, pair)
            self._finalizer = weakref.finalize(self, _close_local, ring, self._lock)
        self._set_ring(ring)
        self._adopt_running_loop()

    def _set_time_origin(self, origin: TimeOrigin) -> None:
        self._time = origin
        self._origin_ns = origin.monotonic_ns
        self.time_origin = origin.time_origin

    def _set_ring(self, ring: Ring) -> None:
        self._ring = ring
        # Bytes of strings a record may carry (see _limits and Recorder.finish).
        self._string_budget = ring.max_record - RECORD.size

    def _init_consumer(self) -> None:
        self._lock = threading.RLock()
        self._store = Store()
        self._secondary: list[bytes] = []
        self._dropped_by_task = 0
        self._backlog = WorkerBacklog()
        self._stuck: StuckWatch | None = None
        self._listeners: list = []
        self._onfull: Callable | None = None
        self._observers: list = []
        self._home = None
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
        ``SharedTimelineError``. Raises ``SharedTimelineError`` when the name is not a
        shared timeline's name, or the segment is missing or not a restiming timeline.
        """
        name = check_segment_name(name)
        self = cls.__new__(cls)
        self._init_consumer()
        ring = Ring.attach(name)
        stats = ring.stats()
        self._origin = None
        self._set_time_origin(TimeOrigin(stats.origin_realtime_ns, stats.origin_monotonic_ns))
        self._pid = os.getpid()
        self._owner = False
        self._finalizer = weakref.finalize(self, _close_local, ring, self._lock)
        self._set_ring(ring)
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
        first flushes records it kept back while the ring was full (up to ``timeout``),
        counting those it could not deliver in ``dropped_entries``. Safe to call while
        other threads record: they get ``RestimingError`` once it is closed."""
        with self._lock:
            if self._closed:
                return
            producer_only = not self._is_owner()
        if producer_only:
            self._backlog.flush_until(self._ring, timeout, self._lock)
        with self._lock:
            if self._closed:
                return
            stats = self._ring.stats()
            # The ring goes away below; keep the count readable (a worker learns here
            # how many kept-back records close() could not deliver).
            self._dropped_at_close = int(stats.dropped_overflow) + self._dropped_by_task + self._backlog.dropped
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
        return self._time.since()

    def to_ms(self, ns: int) -> float:
        """Convert a monotonic nanosecond stamp to this timeline's milliseconds."""
        return self._time.to_ms(ns)

    # -------------------------------------------------------------- recording
    def begin(self, url: str, initiator_type: str = "fetch") -> Recorder:
        """Start an entry for ``url``: ``start_time`` and ``fetch_start`` are stamped now."""
        if self._closed:
            raise RestimingError("this Performance was closed")
        if not (type(url) is str and url) and not (isinstance(url, str) and url):
            raise TypeError(f"url must be a non-empty str, got {url!r}")
        if not (type(initiator_type) is str and initiator_type) and not (
                isinstance(initiator_type, str) and initiator_type):
            raise TypeError(f"initiator_type must be {_VALID_INITIATORS_HINT}, got {initiator_type!r}")
        return Recorder(self, url, initiator_type)

    def _publish(self, packed: bytes) -> PerformanceResourceTiming:
        """Publish one packed record (``Recorder.finish``): one C call, lock held."""
        with self._lock:
            if self._closed:
                raise RestimingError("this Performance was closed")
            owner = self._owner and self._pid == _PID[0]
            backlog = self._backlog
            if backlog.records and not backlog.flush(self._ring):
                backlog.keep(packed)
                result = 0
            else:
                result = _publish_raw(self._ring.ptr, packed, len(packed))
                if result < 0:
                    ensure(result, "publishing a record")
                if result & _PUB_RING_FULL:
                    if owner:
                        result = self._publish_after_pump(packed)
                    else:
                        backlog.keep(packed)
                        result = 0
        if owner:
            if result & _PUB_BECAME_FULL:
                self._queue(self._buffer_full_task, "_task_queued")
            if self._observers:
                self._queue(self._observer_task, "_observer_task_queued")
        entry = _new_entry(PerformanceResourceTiming)
        _set_entry(entry, [packed, 0, self._origin_ns])  # PerformanceResourceTiming._lazy, inlined
        return entry

    def _publish_after_pump(self, packed: bytes) -> int:
        # The owner is the consumer: make room by pulling records out, then retry. No
        # thread of this process is mid-publish (the lock); a worker process may be,
        # and one that died there is stepped over after STUCK_RECORD_TIMEOUT.
        deadline = time.monotonic() + STUCK_RECORD_TIMEOUT + 1.0
        while True:
            self._pump()
            result = self._ring.publish_raw(packed)
            if not result & _PUB_RING_FULL:
                return result
            if time.monotonic() > deadline:
                raise RestimingError("ring stayed full while draining it; a producer stopped mid-publish")
            time.sleep(0.0005)

    def flush(self) -> None:
        """Pull pending records now and run due notifications when no loop will.

        Workers: retry records kept back while the shared ring was full."""
        if not self._is_owner():
            with self._lock:
                self._check_open()
                self._backlog.flush(self._ring)
            return
        self._sync()

    def stats(self):
        """The ring's raw counters (for diagnostics and tests)."""
        with self._lock:
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
                self._listeners = [item for item in self._listeners if item is not ONATTR]
            elif ONATTR not in self._listeners:
                self._listeners.append(ONATTR)
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
