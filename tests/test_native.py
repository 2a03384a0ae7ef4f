"""Smoke tests for the compiled core and the C clock (restiming._native, restiming.clock).

The first test imports the cffi module and calls it once, so a broken build fails
here, with an obvious name, before anything above it is tested.
https://w3c.github.io/hr-time/#dfn-monotonic-clock
"""

from __future__ import annotations

import time

import pytest

from restiming import clock


def test_native_module_imports_and_answers():
    from restiming import _native

    value = _native.lib.rt_now_ns()
    assert isinstance(value, int)
    assert value > 0
    assert _native.lib.RT_OK == 0
    assert _native.ffi.sizeof("rt_record") == 184


def test_binding_is_the_only_importer():
    from restiming import _binding, _native

    assert _binding.lib is _native.lib
    assert _binding.ffi is _native.ffi


def test_ensure_translates_status_codes():
    from restiming._binding import ensure, lib
    from restiming._exceptions import NativeError, SharedTimelineError

    assert ensure(0, "ok") == 0
    assert ensure(5, "positive bits pass through") == 5
    with pytest.raises(NativeError) as info:
        ensure(lib.RT_EINVAL, "doing a thing")
    assert info.value.status == lib.RT_EINVAL
    assert "doing a thing" in str(info.value)
    for code in (lib.RT_ENOENT, lib.RT_EFOREIGN, lib.RT_EEXIST):
        with pytest.raises(SharedTimelineError):
            ensure(code, "shared")


def test_now_ns_is_int_and_monotonic():
    values = [clock.now_ns() for _ in range(10_000)]
    assert all(isinstance(v, int) for v in values[:10])
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_now_ns_is_the_monotonic_clock():
    # Same clock as time.monotonic_ns (CLOCK_MONOTONIC on Linux): readings interleave.
    a = time.monotonic_ns()
    b = clock.now_ns()
    c = time.monotonic_ns()
    assert a <= b <= c


def test_now_ns_advances_with_sleep():
    a = clock.now_ns()
    time.sleep(0.01)
    b = clock.now_ns()
    assert 9_000_000 <= b - a < 2_000_000_000


def test_resolution_is_fine_grained():
    res = clock.resolution_ns()
    assert isinstance(res, int)
    assert 1 <= res <= 1_000  # no coarsening: at most a microsecond
    assert res == round(time.clock_getres(time.CLOCK_MONOTONIC) * 1e9)


def test_consecutive_readings_resolve_below_a_millisecond():
    # Full resolution: two back-to-back readings differ by far less than 1 ms, and
    # some pairs differ at all (the clock is not coarsened to ms).
    deltas = []
    for _ in range(1000):
        a = clock.now_ns()
        b = clock.now_ns()
        deltas.append(b - a)
    assert all(d >= 0 for d in deltas)
    assert any(0 < d < 1_000_000 for d in deltas)


def test_pair_ns_is_sane():
    before_real = time.time_ns()
    before_mono = time.monotonic_ns()
    real, mono = clock.pair_ns()
    after_mono = time.monotonic_ns()
    after_real = time.time_ns()
    assert isinstance(real, int) and isinstance(mono, int)
    assert before_mono <= mono <= after_mono
    # Allow for NTP slews between the Python and C readings, but not more.
    assert before_real - 1_000_000 <= real <= after_real + 1_000_000


def test_pair_ns_consistent_over_time():
    r1, m1 = clock.pair_ns()
    time.sleep(0.02)
    r2, m2 = clock.pair_ns()
    # Realtime and monotonic advanced by about the same amount (no step expected here).
    assert abs((r2 - r1) - (m2 - m1)) < 5_000_000


def test_missing_native_module_is_a_clear_import_error(tmp_path):
    """No silent fallback: without the compiled core, importing restiming fails with
    an ImportError that says how to rebuild."""
    import os
    import shutil
    import subprocess
    import sys

    import restiming

    # A copy of the package without the compiled module, imported in a fresh process.
    src = os.path.dirname(restiming.__file__)
    dst = tmp_path / "restiming"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_native*.so", "__pycache__"))
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "try:\n    import restiming\nexcept ImportError as e:\n    print('IMPORTERROR', e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path))
    assert "IMPORTERROR" in proc.stdout, proc.stdout + proc.stderr
    assert "restiming._native" in proc.stdout
    assert "pip install" in proc.stdout and "no pure-Python fallback" in proc.stdout


def test_python_record_layout_matches_the_compiled_one():
    from restiming._binding import ffi
    from restiming._fields import FLAGS_OFFSET, RECORD, URL_LEN_OFFSET

    assert RECORD.size == ffi.sizeof("rt_record")
    assert FLAGS_OFFSET == ffi.offsetof("rt_record", "flags")
    assert URL_LEN_OFFSET == ffi.offsetof("rt_record", "url_len")
