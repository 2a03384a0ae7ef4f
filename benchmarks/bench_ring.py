"""Ring throughput: publish + drain, single producer against ``collections.deque``
(append/popleft of equivalent tuples), and two producer processes against
``multiprocessing.Queue`` (same number of records, the parent consuming). Reported as
records/s; the ratio is restiming's over the baseline's."""

from __future__ import annotations

import collections
import multiprocessing
import os
import secrets
import time

import pytest

from restiming._binding import ffi
from restiming._ring import Ring

import _bench_workers as workers

URL = b"https://example.test/resource/0123456789"
SINGLE = 10_000        # records per round, single producer
MULTI = 100_000        # records per round, two processes together
UNLIMITED = 2**62


@pytest.mark.benchmark(group="ring: 1 producer, publish + drain")
def test_baseline_deque(benchmark):
    benchmark.extra_info.update(baseline=True, records=SINGLE)
    queue: collections.deque = collections.deque()
    items = [workers.record_tuple(0, seq, URL) for seq in range(SINGLE)]

    def run():
        append = queue.append
        for item in items:
            append(item)
        popleft = queue.popleft
        n = 0
        while queue:
            popleft()
            n += 1
        return n

    assert benchmark(run) == SINGLE


@pytest.mark.benchmark(group="ring: 1 producer, publish + drain")
def test_ring_single_producer(benchmark):
    benchmark.extra_info["records"] = SINGLE
    ring = Ring.create(1 << 16, UNLIMITED, 0, (0, 0))  # 4 MiB: a whole round in flight
    rec = ffi.new("rt_record *")
    rec.url_len = len(URL)
    rec.text_len = 5
    strings = URL + b"fetch"
    buf = bytearray(1 << 20)

    def run():
        publish = ring.publish
        for seq in range(SINGLE):
            rec.stamp[1] = seq
            publish(rec, strings)
        n = 0
        while True:
            _used, count, _klass = ring.drain_into(buf, 0)
            if not count:
                return n
            n += count

    try:
        assert benchmark(run) == SINGLE
    finally:
        ring.close()


def _two_process_rounds(benchmark, target, make_args, consume):
    ctx = multiprocessing.get_context("spawn")
    controls = [ctx.Queue() for _ in range(2)]
    procs = [ctx.Process(target=target, args=make_args(p, controls[p]), daemon=True) for p in range(2)]
    for proc in procs:
        proc.start()

    def run():
        for control in controls:
            control.put(MULTI // 2)
        return consume(MULTI)

    try:
        assert benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1) == MULTI
    finally:
        for control in controls:
            control.put(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


@pytest.mark.benchmark(group="ring: 2 processes -> parent")
def test_baseline_multiprocessing_queue(benchmark):
    benchmark.extra_info.update(baseline=True, records=MULTI)
    data = multiprocessing.get_context("spawn").Queue()

    def consume(n):
        get = data.get
        for _ in range(n):
            get(timeout=60)
        return n

    _two_process_rounds(benchmark, workers.queue_worker, lambda p, c: (p, c, data, URL), consume)


@pytest.mark.benchmark(group="ring: 2 processes -> parent")
def test_shared_ring_two_processes(benchmark):
    benchmark.extra_info["records"] = MULTI
    name = f"/restiming-bench-{os.getpid()}-{secrets.token_hex(4)}"
    ring = Ring.create_shared(name, 1 << 14, UNLIMITED, 0, (0, 0))
    buf = bytearray(1 << 20)

    def consume(n):
        got = 0
        deadline = time.monotonic() + 60
        while got < n:
            _used, count, _klass = ring.drain_into(buf, 0)
            got += count
            if not count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"producers stalled after {got} records")
                time.sleep(50e-6)  # leave the two cores to the producers meanwhile
        return got

    try:
        _two_process_rounds(benchmark, workers.ring_worker, lambda p, c: (name, p, c, URL), consume)
    finally:
        ring.close()
        Ring.unlink(name)
