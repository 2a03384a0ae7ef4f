"""A worker's backlog: records an attached (or forked) producer keeps while the
shared ring is full because the owner is behind, retried before the next publish,
bounded, and counted when dropped (at the bound, or undelivered at ``close()``).
"""

from __future__ import annotations

import collections
import time

from restiming._binding import lib

__all__ = ["WorkerBacklog", "WORKER_BACKLOG_LIMIT"]

#: Records a worker keeps locally while the shared ring is full (the parent is
#: behind); beyond that they are dropped and counted in the worker's dropped_entries.
WORKER_BACKLOG_LIMIT = 100_000

_PUB_RING_FULL = lib.RT_PUB_RING_FULL


class WorkerBacklog:
    """Packed records waiting for room in a ring. The caller holds its timeline's lock."""

    __slots__ = ("records", "dropped", "limit")

    def __init__(self, limit: int = WORKER_BACKLOG_LIMIT) -> None:
        self.records: collections.deque[bytes] = collections.deque()
        self.dropped = 0
        self.limit = limit

    def __bool__(self) -> bool:
        return bool(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def keep(self, packed: bytes) -> None:
        """Keep ``packed`` for later, or count it dropped when the backlog is full."""
        if len(self.records) >= self.limit:
            self.dropped += 1
        else:
            self.records.append(packed)

    def flush(self, ring) -> bool:
        """Publish kept records in order until the ring is full; True when all went."""
        records = self.records
        while records:
            if ring.publish_raw(records[0]) & _PUB_RING_FULL:
                return False
            records.popleft()
        return True

    def flush_until(self, ring, timeout: float, lock) -> None:
        """At close: retry for up to ``timeout`` seconds, then count the rest dropped."""
        deadline = time.monotonic() + timeout
        while True:
            with lock:
                if self.flush(ring) or time.monotonic() >= deadline:
                    self.dropped += len(self.records)
                    self.records.clear()
                    return
            time.sleep(0.001)
