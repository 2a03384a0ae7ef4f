"""The C clock (``restiming.clock.now_ns``: clock_gettime(CLOCK_MONOTONIC) through cffi)
against the stdlib's ``time.perf_counter_ns`` (the named baseline)."""

from __future__ import annotations

import time

import pytest

from restiming import clock
from restiming._binding import lib

pytestmark = pytest.mark.benchmark(group="clock: one reading")


def test_baseline_perf_counter_ns(benchmark):
    benchmark.extra_info["baseline"] = True
    assert benchmark(time.perf_counter_ns) > 0


def test_clock_now_ns(benchmark):
    assert benchmark(clock.now_ns) > 0


def test_raw_cffi_rt_now_ns(benchmark):
    assert benchmark(lib.rt_now_ns) > 0
