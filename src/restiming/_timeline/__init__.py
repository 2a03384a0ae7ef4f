"""The performance timeline: ``Performance`` and its parts.

Strategy: producers (``Recorder.finish``, from any thread, or from worker processes
attached to a shared segment) publish packed records into the C ring, which
classifies each one into the primary buffer, the secondary buffer or a counted drop,
and says when the buffer became full. The owning ``Performance`` is the single
consumer: it pulls records out ("pump") before every query and in its loop
callbacks, keeps them packed, and builds (lazily decoded) entry objects only for
whoever looks. The parts, one module each:

- ``_origin``: the time origin (one realtime/monotonic pair) and ms conversion;
- ``_buffer``: the buffer policy: pump, buffer-full task, queries, drain;
- ``_scheduling``: the home loop, queued and deferred callbacks, the shared poll;
- ``_shared``: shared segments: names, stale-segment cleanup, stuck records;
- ``_backlog``: a worker's records kept back while the shared ring is full;
- ``_events``: the buffer-full event and reporting of callback exceptions;
- ``_performance``: the ``Performance`` class that joins them.

https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
https://w3c.github.io/performance-timeline/#the-performance-interface
"""

from restiming._timeline._backlog import WORKER_BACKLOG_LIMIT
from restiming._timeline._buffer import SECONDARY_BUFFER_CAPACITY
from restiming._timeline._events import ResourceTimingBufferFullEvent
from restiming._timeline._performance import LOCAL_RING_CELLS, SHARED_RING_CELLS, Performance
from restiming._timeline._scheduling import SHARED_POLL_INTERVAL
from restiming._timeline._shared import STUCK_RECORD_TIMEOUT

__all__ = ["Performance", "ResourceTimingBufferFullEvent", "LOCAL_RING_CELLS", "SHARED_RING_CELLS",
           "SECONDARY_BUFFER_CAPACITY", "WORKER_BACKLOG_LIMIT", "SHARED_POLL_INTERVAL",
           "STUCK_RECORD_TIMEOUT"]
