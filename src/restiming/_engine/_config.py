"""Client configuration values: timeouts and limits, validated once.

Every limit has a documented default; a bad value is a ``TypeError``/``ValueError``
at construction, never a surprise mid-fetch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from restiming._exceptions import InvalidRequest, TotalTimeout

__all__ = ["Timeout", "Limits", "bound"]


def _seconds(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequest(f"{what} must be a positive finite number of seconds, got {value!r}")
    return float(value)


def bound(seconds: float | None, deadline: float | None, now: float) -> float | None:
    """``seconds`` shortened to what is left before ``deadline`` (loop time), the
    fetch's total deadline; ``TotalTimeout`` once it has passed."""
    if deadline is None:
        return seconds
    remaining = deadline - now
    if remaining <= 0:
        raise TotalTimeout("the fetch's total deadline passed")
    return remaining if seconds is None or remaining < seconds else seconds


@dataclass(frozen=True, slots=True)
class Timeout:
    """Deadlines in seconds (``None`` disables one).

    ``connect``: DNS + TCP + TLS of one new connection. ``read``: the longest wait for
    the next bytes of a response. ``write``: the longest wait for the request to drain
    into the socket. ``pool``: the longest wait for a free connection slot. ``total``:
    the whole fetch, redirects and body included.
    """

    connect: float | None = 30.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 30.0
    total: float | None = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _seconds(getattr(self, f.name), f"Timeout.{f.name}"))

    @classmethod
    def coerce(cls, value: "Timeout | float | None") -> "Timeout":
        """A float sets every deadline, the total included; ``None`` disables all."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None, None, None, None)
        seconds = _seconds(value, "timeout")
        return cls(seconds, seconds, seconds, seconds, seconds)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of a ``Client``. Defaults:

    - ``max_connections=100``: open connections in total;
    - ``max_connections_per_origin=100``: open connections to one origin;
    - ``keepalive_expiry=5.0``: seconds an idle connection is kept for reuse;
    - ``max_header_bytes=65536``: bytes of one response head (status line + fields),
      counted by the engine on the wire;
    - ``max_decompressed_bytes=104857600`` (100 MiB): decoded body bytes of one response;
    - ``max_decompression_ratio=1000``: decoded/encoded ratio allowed once the decoded
      body passes 1 MiB (a zip bomb stops early, without a large allocation);
    - ``max_body_bytes=1073741824`` (1 GiB): encoded bytes ``fetch()`` buffers in memory
      (``stream()`` has no such limit; the caller consumes the chunks).
    """

    max_connections: int = 100
    max_connections_per_origin: int = 100
    keepalive_expiry: float = 5.0
    max_header_bytes: int = 65536
    max_decompressed_bytes: int = 100 * 1024 * 1024
    max_decompression_ratio: float = 1000.0
    max_body_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_origin", "max_header_bytes",
                     "max_decompressed_bytes", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Limits.{name} must be an int, not {type(value).__name__}")
            if value < 1:
                raise InvalidRequest(f"Limits.{name} must be >= 1, got {value}")
        for name in ("keepalive_expiry", "max_decompression_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidRequest(f"Limits.{name} must be a number >= 0, got {value!r}")
