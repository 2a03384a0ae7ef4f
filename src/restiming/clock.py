"""The C monotonic clock every restiming stamp comes from.

``now_ns()`` is ``clock_gettime(CLOCK_MONOTONIC)`` through the compiled core, in
integer nanoseconds, at full resolution (no coarsening). ``pair_ns()`` gives the
realtime + monotonic pair a time origin is made of.
https://w3c.github.io/hr-time/#dfn-monotonic-clock
"""

from __future__ import annotations

from restiming._binding import ensure, ffi, lib

__all__ = ["now_ns", "resolution_ns", "pair_ns"]

# clock_gettime(CLOCK_MONOTONIC) can fail only for a bad clock id or pointer
# (EINVAL, EFAULT): checked once here, so every later reading is the bare C call
# (a Python wrapper would double the cost of each stamp taken from Python).
if lib.rt_now_ns() < 0:  # pragma: no cover - a kernel without CLOCK_MONOTONIC
    ensure(lib.RT_ESYS, "clock_gettime(CLOCK_MONOTONIC)")

#: CLOCK_MONOTONIC now, in integer nanoseconds (the compiled function itself).
now_ns = lib.rt_now_ns


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
