"""Where a timeline's callbacks run: its *home loop*, the running loop of the thread
that recorded (``call_soon_threadsafe`` from other threads). With no running loop,
callbacks wait, deferred, for the start of the next timeline call (a query,
``drain()``, ``flush()``). A shared owner also polls for worker records while someone
listens, since workers cannot wake it.
https://w3c.github.io/performance-timeline/#queue-a-performanceentry
"""

from __future__ import annotations

import asyncio
from typing import Callable

__all__ = ["LoopScheduling", "SHARED_POLL_INTERVAL"]

#: Seconds between the owner's checks for worker records on a shared timeline while
#: observers or buffer-full listeners are registered (workers cannot wake the owner).
SHARED_POLL_INTERVAL = 0.01


class LoopScheduling:
    """Mixin of ``Performance``: needs ``_lock``, ``_home``, ``_deferred``, ``_pump``
    and the two task callbacks with their ``*_queued`` flags."""

    __slots__ = ()

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
        with self._lock:
            if self._closed or not (self._observers or self._listeners):
                return
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
            self._check_open()
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
