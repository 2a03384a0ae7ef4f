"""The C monotonic clock every restiming stamp comes from.

``now_ns()`` is ``clock_gettime(CLOCK_MONOTONIC)`` through the compiled core, in
integer nanoseconds, at full resolution (no coarsening). ``pair_ns()`` gives the
realtime + monotonic pair a time origin is made of.
https://w3c.github.io/hr-time/#dfn-monotonic-clock
"""

from __future__ import annotations

from restiming._binding import ensure, ffi, lib

__all__ = ["now_ns", "resolution_ns", "pair_ns"]

_now = lib.rt_now_ns


def now_ns() -> int:
    """CLOCK_MONOTONIC now, in nanoseconds."""
    value = _now()
    if value < 0:  # -errno; cannot happen for CLOCK_MONOTONIC on Linux
        ensure(lib.RT_ESYS, "clock_gettime(CLOCK_MONOTONIC)")
    return value


def resolution_ns() -> int:
    """The resolution of CLOCK_MONOTONIC, in nanoseconds."""
    out = ffi.new("int64_t *")
    ensure(lib.rt_clock_resolution_ns(out), "clock_getres")
    return int(out[0])


def pair_ns() -> tuple[int, int]:
    """(realtime, monotonic) nanoseconds read as one instant, for a time origin."""
    real = ffi.new("int64_t *")
    mono = ffi.new("int64_t *")
    ensure(lib.rt_clock_pair(real, mono), "clock pair")
    return int(real[0]), int(mono[0])
