"""PerformanceObserver and PerformanceObserverEntryList.

Observers register with one ``Performance``; its consumer hands every new entry to
each registered observer (whatever the state of the buffer) and queues one observer
task on the home loop, which calls each observer with what it collected.
https://w3c.github.io/performance-timeline/#the-performanceobserver-interface
"""

from __future__ import annotations

from operator import attrgetter
from typing import Callable, Iterable

from restiming._timeline._events import _report
from restiming._timeline import Performance

__all__ = ["PerformanceObserver", "PerformanceObserverEntryList"]

_BY_START = attrgetter("start_time")
SUPPORTED = ("resource",)


class PerformanceObserverEntryList:
    """The entries one callback receives, sorted by ``start_time``."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable) -> None:
        self._entries = sorted(entries, key=_BY_START)

    def get_entries(self) -> list:
        return list(self._entries)

    def get_entries_by_type(self, type: str) -> list:
        return [e for e in self._entries if e.entry_type == type]

    def get_entries_by_name(self, name: str, type: str | None = None) -> list:
        return [e for e in self._entries if e.name == name and (type is None or e.entry_type == type)]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<PerformanceObserverEntryList {len(self._entries)} entries>"


class PerformanceObserver:
    """``callback(entry_list, observer)`` runs on the timeline's loop with new entries."""

    supported_entry_types = SUPPORTED

    def __init__(self, callback: Callable, performance: Performance | None = None) -> None:
        if not callable(callback):
            raise TypeError("PerformanceObserver callback must be callable")
        if performance is None:
            from restiming import performance as default

            performance = default
        if not isinstance(performance, Performance):
            raise TypeError(f"performance must be a restiming.Performance, not {type(performance).__name__}")
        self._callback = callback
        self._perf = performance
        self._buffer: list = []
        self._mode: str | None = None  # "single" (type=) or "multiple" (entry_types=)
        self._types: frozenset = frozenset()

    def observe(self, type: str | None = None, buffered: bool = False, *,
                entry_types: Iterable[str] | None = None) -> None:
        """Start observing: ``observe(type="resource", buffered=...)`` or
        ``observe(entry_types=["resource"])``. Raises ``TypeError`` for a missing type,
        both forms at once, ``buffered`` with ``entry_types``, an empty or
        unknown-only list, an unknown type, or switching between the two forms."""
        perf = self._perf
        perf._check_queryable()
        if entry_types is None and type is None:
            raise TypeError("observe() needs type= or entry_types=")
        if entry_types is not None and type is not None:
            raise TypeError("observe() takes type= or entry_types=, not both")
        if entry_types is not None and buffered:
            raise TypeError("buffered=True works only with type=, not entry_types=")
        if entry_types is not None:
            if isinstance(entry_types, str):
                raise TypeError("entry_types must be a list of str, not a str")
            wanted = [t for t in entry_types if t in SUPPORTED]
            if not wanted:
                raise TypeError(f"entry_types {list(entry_types)!r} names no supported type; "
                                f"supported: {', '.join(SUPPORTED)}")
            mode = "multiple"
        else:
            if type not in SUPPORTED:
                raise TypeError(f"unsupported entry type {type!r}; supported: {', '.join(SUPPORTED)}")
            wanted = [type]
            mode = "single"
        if self._mode is not None and self._mode != mode:
            raise TypeError("an observer observes either with type= or with entry_types=; "
                            "disconnect() before switching")
        perf._adopt_running_loop()
        perf._arm_poll()
        with perf._lock:
            # Entries finished before this call are not this observer's: pump them
            # out of the ring before it listens, and (buffered) take them from the
            # buffer instead, so none is missed or delivered twice.
            perf._pump()
            self._mode = mode
            self._types = frozenset(wanted)
            if self not in perf._observers:
                perf._observers.append(self)
            if buffered:
                self._buffer.extend(perf._buffered_entries())
                perf._queue(perf._observer_task, "_observer_task_queued")

    def take_records(self) -> list:
        """Return and empty this observer's pending entries (sorted by start_time)."""
        perf = self._perf
        if perf._is_owner() and not perf._closed:
            with perf._lock:
                perf._pump()
        with perf._lock:
            records, self._buffer = self._buffer, []
        records.sort(key=_BY_START)
        return records

    def disconnect(self) -> None:
        perf = self._perf
        with perf._lock:
            if self in perf._observers:
                perf._observers.remove(self)
            self._buffer = []
            self._mode = None
            self._types = frozenset()

    def _enqueue(self, entries: list) -> None:
        if "resource" in self._types:
            self._buffer.extend(entries)

    def _deliver(self) -> None:
        with self._perf._lock:
            entries, self._buffer = self._buffer, []
        if not entries:
            return
        try:
            self._callback(PerformanceObserverEntryList(entries), self)
        except Exception as exc:
            _report(exc, "a PerformanceObserver callback")

    def __repr__(self) -> str:
        return f"<PerformanceObserver types={sorted(self._types)} pending={len(self._buffer)}>"
