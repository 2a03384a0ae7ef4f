"""restiming: a W3C Resource Timing entry for every HTTP fetch, stamped at the socket
level by a C monotonic clock, kept in a bounded timeline with the spec's buffer-full
event, delivered to observers, shareable across processes.

Public names are re-exported here; every implementation module is private.
"""

from restiming import clock
from restiming._engine import CachingResolver, Client, Headers, Limits, Response, StreamResponse, Timeout
from restiming._entry import PerformanceResourceTiming, PerformanceServerTiming
from restiming._exceptions import *  # noqa: F403 - the one error hierarchy
from restiming._exceptions import __all__ as _errors
from restiming._observer import PerformanceObserver, PerformanceObserverEntryList
from restiming._record import Recorder
from restiming._timeline import Performance, ResourceTimingBufferFullEvent

__version__ = "0.1.0"

#: The default timeline, used when no Performance is given.
performance = Performance()

__all__ = [
    "clock",
    "Client",
    "Limits",
    "Timeout",
    "CachingResolver",
    "Headers",
    "Response",
    "StreamResponse",
    "performance",
    "Performance",
    "PerformanceResourceTiming",
    "PerformanceServerTiming",
    "PerformanceObserver",
    "PerformanceObserverEntryList",
    "Recorder",
    "ResourceTimingBufferFullEvent",
    *_errors,
]
