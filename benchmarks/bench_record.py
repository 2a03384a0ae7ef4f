"""Recording cost. A full record (``perf.begin``, 10 ``rec.stamp`` calls, ``rec.finish``,
published) against two named baselines measured in the same run: the same record built
from Python objects (a slotted object whose stamps come from ``time.perf_counter_ns``,
kept in a list "buffer"), and the recording path before issue 7 (``_legacy_record``: a
cffi record, one C call per stamp and per field). The engine's own way (stamps written
into ``rec.stamps`` directly) is measured too. One ``rec.stamp`` is compared with the
engine's direct write ``rec.stamps[i] = lib.rt_now_ns()``.

Run: ``python -m pytest benchmarks/bench_record.py --benchmark-enable``."""

from __future__ import annotations

import time

import pytest

import restiming
from restiming._binding import lib
from restiming._fields import SLOT

from _legacy_record import LegacyRecorder  # noqa: E402 (benchmarks/ is on sys.path: rootdir-relative)

PHASES = (
    "domain_lookup_start", "domain_lookup_end", "connect_start", "secure_connection_start",
    "connect_end", "request_start", "request_end", "final_response_headers_start",
    "response_end", "redirect_end",
)
URL = "https://example.test/resource/0123456789"


class PyRecord:
    __slots__ = ("name", "initiator_type", "stamps", "status", "encoded", "decoded")

    def __init__(self, name: str, initiator_type: str) -> None:
        self.name = name
        self.initiator_type = initiator_type
        self.stamps = [time.perf_counter_ns()]


@pytest.fixture
def perf():
    p = restiming.Performance(buffer_size=10**9)
    yield p
    p.close()


@pytest.mark.benchmark(group="record: begin + 10 stamps + finish")
def test_baseline_python_objects(benchmark):
    benchmark.extra_info["baseline"] = True
    buffer: list = []
    now = time.perf_counter_ns

    def run():
        rec = PyRecord(URL, "fetch")
        stamps = rec.stamps
        for _ in PHASES:
            stamps.append(now())
        rec.status, rec.encoded, rec.decoded = 200, 1000, 1000
        buffer.append(rec)
        return rec

    benchmark(run)


@pytest.mark.benchmark(group="record: begin + 10 stamps + finish")
def test_restiming_record(benchmark, perf):
    def run():
        rec = perf.begin(URL)
        stamp = rec.stamp
        for phase in PHASES:
            stamp(phase)
        return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=1000)

    benchmark(run)
    perf.drain()


@pytest.mark.benchmark(group="record: one-call path vs the per-field path (before issue 7)")
def test_baseline_per_field_path(benchmark, perf):
    benchmark.extra_info["baseline"] = True

    def run():
        rec = LegacyRecorder(perf, URL)
        stamp = rec.stamp
        for phase in PHASES:
            stamp(phase)
        return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=1000)

    benchmark(run)
    perf.drain()


@pytest.mark.benchmark(group="record: one-call path vs the per-field path (before issue 7)")
def test_restiming_record_one_call(benchmark, perf):
    def run():
        rec = perf.begin(URL)
        stamp = rec.stamp
        for phase in PHASES:
            stamp(phase)
        return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=1000)

    benchmark(run)
    perf.drain()


@pytest.mark.benchmark(group="record: one-call path vs the per-field path (before issue 7)")
def test_restiming_record_engine_style(benchmark, perf):
    slots = [SLOT[p] for p in PHASES]
    now = lib.rt_now_ns

    def run():
        rec = perf.begin(URL)
        stamps = rec.stamps
        for i in slots:
            stamps[i] = now()
        return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=1000)

    benchmark(run)
    perf.drain()


@pytest.mark.benchmark(group="stamp: one phase")
def test_baseline_direct_write(benchmark, perf):
    benchmark.extra_info["baseline"] = True
    stamps = perf.begin(URL).stamps
    i = SLOT["connect_start"]
    now = lib.rt_now_ns

    def run():
        stamps[i] = now()

    benchmark(run)


@pytest.mark.benchmark(group="stamp: one phase")
def test_restiming_stamp(benchmark, perf):
    rec = perf.begin(URL)
    benchmark(rec.stamp, "connect_start")
    assert rec.get("connect_start") > 0


@pytest.mark.benchmark(group="record: begin + finish (no stamps), vs the per-field path")
def test_baseline_per_field_begin_finish(benchmark, perf):
    benchmark.extra_info["baseline"] = True
    benchmark(lambda: LegacyRecorder(perf, URL).finish(response_status=200, encoded_body_size=1000,
                                                       decoded_body_size=1000))
    perf.drain()


@pytest.mark.benchmark(group="record: begin + finish (no stamps), vs the per-field path")
def test_restiming_begin_finish(benchmark, perf):
    benchmark(lambda: perf.begin(URL).finish(response_status=200, encoded_body_size=1000,
                                             decoded_body_size=1000))
    perf.drain()


@pytest.mark.benchmark(group="drain: 1,000 entries, taken and not looked at")
def test_baseline_drain_eager(benchmark, perf):
    """Named baseline: entries decoded when taken (as drain() did before issue 7)."""
    benchmark.extra_info["baseline"] = True
    from restiming._entry import decode_record

    def run():
        for _ in range(1000):
            perf.begin(URL).finish(response_status=200)
        perf._sync()
        with perf._lock:
            entries = [decode_record(buf, off, perf._origin_ns) for buf, off in perf._store.records()]
            perf._ring.release_primary(perf._store.clear())
        entries.sort(key=lambda e: e.start_time)
        return entries

    benchmark(run)


@pytest.mark.benchmark(group="drain: 1,000 entries, taken and not looked at")
def test_restiming_drain_lazy(benchmark, perf):
    def run():
        for _ in range(1000):
            perf.begin(URL).finish(response_status=200)
        return perf.drain()

    benchmark(run)
