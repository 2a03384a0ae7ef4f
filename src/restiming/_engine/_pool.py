"""The keep-alive pool: per-origin idle stacks, total and per-origin limits, waiters.

``acquire`` gives back an idle connection (most recently used first, since it is
the likeliest to still be open) or reserves a slot for the caller to open a new
one; when the limits are reached it waits (the client bounds the wait), evicting an idle
connection of another origin if that frees the slot. Idle connections past
``keepalive_expiry`` or closed by the peer are discarded when met and by a sweep.

Multiplexed (HTTP/2) connections stay listed per origin while open and hand out
a stream while they have room; ``take_idle`` prefers them. While a connection to an
https origin that may negotiate h2 is opening, other fetches to that origin wait
for it (and share it if it speaks h2) instead of opening connections of their own;
a second connection opens only when the first is full and the limits allow.
"""

from __future__ import annotations

import asyncio
import collections
import time

from restiming._exceptions import ClientClosed

__all__ = ["Pool"]

_SWEEP_INTERVAL = 1.0


class Pool:
    def __init__(self, limits, multiplex: bool = False) -> None:
        self._limits = limits
        # HTTP/2: open multiplexed connections per origin, connections being opened
        # that may turn out multiplexed, and origins known to answer http/1.1.
        self._multiplex = multiplex
        self._shared: dict[tuple, list] = {}
        self._negotiating: collections.Counter = collections.Counter()
        self._h1_origins: set = set()
        self._idle: dict[tuple, list] = {}
        self._per_origin: collections.Counter = collections.Counter()
        self._total = 0
        self._waiters: collections.deque = collections.deque()
        self._last_sweep = time.monotonic()
        self._all: set = set()
        # After close(), counts stay at zero: reservations taken before it are not
        # given back twice, and connections opened after it are closed at once.
        self.closed = False

    @property
    def open_connections(self) -> int:
        return self._total

    def take_idle(self, origin: tuple):
        """A usable idle connection for ``origin`` without waiting, or ``None``
        (the common keep-alive case, without a coroutine)."""
        if self.closed:
            return None
        now = time.monotonic()
        if now - self._last_sweep > _SWEEP_INTERVAL:
            self._sweep(now)
        if self._shared:
            stream = self._take_stream(origin, now)
            if stream is not None:
                return stream
        idle = self._idle.get(origin)
        expiry = self._limits.keepalive_expiry
        while idle:
            conn = idle.pop()
            if conn.is_idle_usable(expiry, now):
                return conn
            self._discard(conn)
        return None

    def try_reserve(self, origin: tuple) -> bool:
        """Reserve a slot for a new connection to ``origin`` if the limits allow it
        now (no waiting, no coroutine)."""
        if self.closed or self._waiters:
            return False  # those already waiting go first
        if self._may_negotiate(origin):
            return False  # may negotiate h2: acquire() shares the connection being opened
        return self._reserve(origin)

    def _may_negotiate(self, origin: tuple) -> bool:
        """A new connection to ``origin`` may speak h2 (and carry other fetches)."""
        return self._multiplex and origin[0] == "https" and origin not in self._h1_origins

    def _reserve(self, origin: tuple) -> bool:
        """Take a slot for a new connection if the limits allow it."""
        limits = self._limits
        if self._total < limits.max_connections and self._per_origin[origin] < limits.max_connections_per_origin:
            self._total += 1
            self._per_origin[origin] += 1
            return True
        return False

    def _take_stream(self, origin: tuple, now: float):
        conns = self._shared.get(origin)
        if not conns:
            return None
        expiry = self._limits.keepalive_expiry
        for conn in list(conns):
            if not conn.is_idle_usable(expiry, now):
                if not conn.active:
                    self._discard(conn)
                else:
                    conns.remove(conn)  # draining after GOAWAY: discarded at its last release
            elif conn.has_room():
                return conn.open_stream()
        return None

    async def acquire(self, origin: tuple, allow_idle: bool = True):
        """An idle connection for ``origin``, or ``None`` with a slot reserved. Waits
        while the limits are reached; the caller bounds the wait (a deadline on its
        task, see ``_deadlines``)."""
        limits = self._limits
        while True:
            if self.closed:
                raise ClientClosed("this Client was closed")
            conn = self.take_idle(origin) if allow_idle else None
            if conn is not None:
                return conn
            negotiating = self._may_negotiate(origin)
            if negotiating and allow_idle and self._negotiating[origin]:
                pass  # wait for the connection being opened: it may carry us too
            elif self._reserve(origin):
                if negotiating:
                    self._negotiating[origin] += 1
                return None
            elif self._total >= limits.max_connections and self._evict_other(origin):
                continue
            fut = asyncio.get_running_loop().create_future()
            entry = (origin, fut)
            self._waiters.append(entry)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.result():
                    # Woken by a release, then cancelled before running: pass the
                    # wake-up on, or the next waiter sleeps beside a free connection.
                    self._remove(entry)
                    self._wake(origin)
                raise
            finally:
                self._remove(entry)

    def _remove(self, entry) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            pass

    def opened(self, conn):
        """A reserved slot's connection is open. Returns what the fetch exchanges
        on: the connection, or a stream of it when multiplexed."""
        origin = conn.origin
        self._settle(origin, conn.multiplexed)
        if self.closed:
            conn.close()
            return conn.open_stream() if conn.multiplexed else conn
        self._all.add(conn)
        if conn.multiplexed:
            self._shared.setdefault(origin, []).append(conn)
            return conn.open_stream()
        return conn

    def _settle(self, origin: tuple, multiplexed: bool) -> None:
        """A connection that may have negotiated h2 is open or failed: the fetches
        waiting for it look again (they share it, or open their own)."""
        if self._negotiating.get(origin):
            self._negotiating[origin] -= 1
            if not self._negotiating[origin]:
                del self._negotiating[origin]
            if multiplexed is False:
                if len(self._h1_origins) > 4096:
                    self._h1_origins.clear()
                self._h1_origins.add(origin)
            for entry in self._waiters:
                if entry[0] == origin and not entry[1].done():
                    entry[1].set_result(True)

    def release(self, conn, reusable: bool) -> None:
        """Give a connection (or a stream) back after an exchange."""
        if conn.multiplexed:
            owner = conn.connection
            owner.release(conn, reusable)
            if owner.closed or owner.broken or owner.goaway:
                if not owner.active:
                    self._discard(owner)
            elif not self.closed:
                self._wake(owner.origin)
            return
        if reusable and not self.closed and not conn.closed:
            idle = self._idle.get(conn.origin)
            if idle is None:
                idle = self._idle[conn.origin] = []
            idle.append(conn)
            if self._waiters:
                self._wake(conn.origin)
        else:
            self._discard(conn)

    def cancel_reservation(self, origin: tuple) -> None:
        """A reserved slot whose connection failed to open."""
        if self.closed:
            return
        self._settle(origin, None)  # failed: nothing learnt about the protocol
        self._free_slot(origin)

    def _free_slot(self, origin: tuple) -> None:
        if self.closed:
            return
        self._total -= 1
        self._per_origin[origin] -= 1
        if not self._per_origin[origin]:
            del self._per_origin[origin]
        if self._waiters:
            self._wake(origin)

    def _discard(self, conn) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            if conn.multiplexed:
                conns = self._shared.get(conn.origin)
                if conns is not None and conn in conns:
                    conns.remove(conn)
                    if not conns:
                        del self._shared[conn.origin]
            self._free_slot(conn.origin)

    def _evict_other(self, origin: tuple) -> bool:
        oldest = None
        for key, conns in self._idle.items():
            if key != origin and conns and (oldest is None or conns[0].idle_since < oldest[0].idle_since):
                oldest = conns
        if oldest is None:
            return False
        self._discard(oldest.pop(0))
        return True

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        expiry = self._limits.keepalive_expiry
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if conn.is_idle_usable(expiry, now):
                    keep.append(conn)
                else:
                    self._discard(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for key in list(self._shared):
            for conn in list(self._shared.get(key, ())):
                if not conn.active and not conn.is_idle_usable(expiry, now):
                    self._discard(conn)

    def _wake(self, origin: tuple) -> None:
        chosen = None
        for entry in self._waiters:
            if not entry[1].done():
                if entry[0] == origin:
                    chosen = entry
                    break
                if chosen is None:
                    chosen = entry
        if chosen is not None:
            chosen[1].set_result(True)

    def close(self) -> None:
        """Close every connection, idle or in use."""
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        self._shared.clear()
        self._negotiating.clear()
        self._per_origin.clear()
        self._total = 0
        for _origin, fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
