"""Deadlines as data, enforced by one sweep per client.

A fetch's deadlines (connect, read, write, pool, total) are monotonic nanosecond
values kept on the objects that wait (a connection in an exchange, a task opening a
connection or waiting for a pool slot), not a timer per read. ``Sweep`` holds the
waiting objects and one loop timer set at the earliest deadline it knows of; when it
fires it scans them, expires those that are due and re-arms at the next earliest.
Deadlines only move later while a fetch progresses (a read deadline restarts at each
arrival), so the timer usually fires once per timeout period, finds nothing due and
re-arms. The timer is never set closer than ``GRANULARITY_NS`` to the previous one:
a timeout fires at most that late (documented in the README's limits).

A waiting object has ``due() -> int`` (0: no deadline now) and ``expire(now_ns)``.
"""

from __future__ import annotations

import asyncio

from restiming._binding import lib

__all__ = ["Sweep", "TaskDeadline", "GRANULARITY_NS"]

#: A deadline fires at most this late (5 ms): the sweep timer is never re-armed
#: closer than this to now, so bursts of deadlines share one timer callback.
GRANULARITY_NS = 5_000_000
_now = lib.rt_now_ns


class Sweep:
    """The client's deadline sweep (see the module docstring)."""

    __slots__ = ("_waiting", "_at", "_handle", "_loop")

    def __init__(self) -> None:
        self._waiting: set = set()
        self._at = 0  # ns the timer fires at; 0 = no timer
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, item, due: int, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching ``item`` whose earliest deadline is ``due`` (ns)."""
        self._waiting.add(item)
        at = self._at
        if at and at <= due + GRANULARITY_NS and self._loop is loop:
            return  # the armed timer comes first (or close enough)
        self._arm(due, loop)

    def unwatch(self, item) -> None:
        self._waiting.discard(item)
        # The timer stays armed: it costs one callback, cheaper than cancelling and
        # re-arming it for every fetch.

    def _arm(self, due: int, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        now = _now()
        at = max(due, now + GRANULARITY_NS)
        self._at = at
        self._loop = loop
        self._handle = loop.call_later((at - now) / 1e9, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self._at = 0
        loop = self._loop
        if not self._waiting:
            return
        now = _now()
        earliest = 0
        for item in list(self._waiting):
            due = item.due()
            if not due:
                continue
            if due <= now:
                self._waiting.discard(item)
                item.expire(now)
            elif not earliest or due < earliest:
                earliest = due
        if earliest and loop is not None and not loop.is_closed():
            self._arm(earliest, loop)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = 0
        self._waiting.clear()


class TaskDeadline:
    """A deadline on a task's wait (DNS, connect, TLS, pool): when due, the sweep
    cancels the task, and ``fired`` tells the task the cancellation was ours, as
    ``asyncio.timeout`` does with one timer per wait."""

    __slots__ = ("task", "at", "fired", "cancelling")

    def __init__(self, task: asyncio.Task, at: int) -> None:
        self.task = task
        self.at = at
        self.fired = False
        self.cancelling = task.cancelling()

    def due(self) -> int:
        return self.at

    def expire(self, now: int) -> None:
        if not self.task.done():
            self.fired = True
            self.task.cancel()

    def settle(self) -> bool:
        """After the wait: True if the sweep cancelled it (the caller raises its
        timeout), undoing that cancellation so only a caller's own stays pending."""
        if self.fired:
            return self.task.uncancel() <= self.cancelling
        return False
