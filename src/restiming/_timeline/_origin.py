"""The time origin of a timeline: one realtime reading paired with one monotonic
reading when the timeline is created; every stamp is monotonic and expressed in
milliseconds relative to the monotonic half (DOMHighResTimeStamp, full resolution).
https://w3c.github.io/hr-time/#dfn-get-time-origin-timestamp
"""

from __future__ import annotations

from restiming import clock

__all__ = ["TimeOrigin", "check_origin"]


class TimeOrigin:
    """``time_origin`` (ms since the Unix epoch) and the monotonic ns it pairs with."""

    __slots__ = ("realtime_ns", "monotonic_ns", "time_origin")

    def __init__(self, realtime_ns: int, monotonic_ns: int) -> None:
        self.realtime_ns = realtime_ns
        self.monotonic_ns = monotonic_ns
        self.time_origin = realtime_ns / 1e6

    @classmethod
    def now(cls) -> "TimeOrigin":
        return cls(*clock.pair_ns())

    def since(self) -> float:
        """Milliseconds since the origin, from the C monotonic clock."""
        return (clock.now_ns() - self.monotonic_ns) / 1e6

    def to_ms(self, ns: int) -> float:
        """A monotonic nanosecond stamp in this origin's milliseconds (0 stays 0)."""
        return (ns - self.monotonic_ns) / 1e6 if ns else 0.0


def check_origin(origin: object) -> str | None:
    """The document origin for the Timing-Allow-Origin check (``None``: none)."""
    if origin is None:
        return None
    if not isinstance(origin, str) or "://" not in origin:
        raise ValueError(f"origin must look like 'scheme://host[:port]', got {origin!r}")
    return origin.rstrip("/")
