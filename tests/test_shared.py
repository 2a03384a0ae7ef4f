"""Shared timelines: one Performance backed by a POSIX shared-memory ring, worker
processes attached to it by name, entries landing in the owner's buffer with the
owner's time origin, typed errors for missing and foreign segments, and the segment's
life cycle (gone after close() and after the owner process exits).
Child processes run their code from tests/_core_workers.py; every wait is bounded.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
from pathlib import Path

import pytest

import restiming
from restiming import Performance, SharedTimelineError

from . import _core_workers as workers

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm (POSIX shared memory)")
SPAWN = multiprocessing.get_context("spawn")
TIMEOUT = 60.0


def shm_path(name: str) -> Path:
    return SHM / name.lstrip("/")


@pytest.fixture
def shared():
    perf = Performance(buffer_size=100_000, shared=True)
    yield perf
    perf.close()


def run_children(perf: Performance, children: list[tuple[int, int]], *, drain: bool = False):
    """Start one spawn child per (producer, count) recording into ``perf``; wait for all.

    With ``drain`` the parent drains while they run. Returns (results, drained entries).
    """
    results_q = SPAWN.Queue()
    procs = [SPAWN.Process(target=workers.timeline_producer,
                           args=(perf.share_name, producer, count, results_q), daemon=True)
             for producer, count in children]
    drained: list = []
    results = []
    deadline = time.monotonic() + TIMEOUT
    try:
        for proc in procs:
            proc.start()
        while len(results) < len(procs):
            if drain:
                drained += perf.drain()
            try:
                results.append(results_q.get(timeout=0.01 if drain else 1))
            except Exception:  # queue.Empty
                pass
            assert time.monotonic() < deadline, "children did not finish in time"
            if not drain and not any(p.is_alive() for p in procs) and results_q.empty():
                break
        for proc in procs:
            proc.join(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.exitcode == 0, f"child exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    assert len(results) == len(procs)
    for result in results:
        assert result[-1] == [], result[-1]
    return sorted(results), drained


def test_shared_segment_exists_and_is_named(shared):
    name = shared.share_name
    assert name.startswith("/restiming-")
    assert shm_path(name).exists()
    assert Performance().share_name is None


def test_child_entries_land_in_the_parent_with_its_time_origin(shared):
    window_start = shared.now()
    (result,), _ = run_children(shared, [(0, 500)])
    window_end = shared.now()
    producer, before, after, child_origin, dropped, errors = result
    assert child_origin == shared.time_origin
    assert dropped == 0
    assert window_start <= before <= after <= window_end
    entries = shared.get_entries()
    assert [e.name for e in entries] == [f"https://child0.example/{i}" for i in range(500)]
    for entry in entries:
        assert before <= entry.start_time <= entry.request_start <= entry.response_end <= after
        assert window_start <= entry.start_time <= window_end
    assert entries[7].encoded_body_size == 7 and entries[7].transfer_size == 307


def test_several_children_while_the_parent_drains(shared):
    children = [(1, 3000), (2, 3000)]
    results, drained = run_children(shared, children, drain=True)
    drained += shared.drain()
    seen = [e.name for e in drained]
    assert len(seen) == len(set(seen)) == 6000
    for producer, count in children:
        assert {f"https://child{producer}.example/{i}" for i in range(count)} <= set(seen)
    assert shared.dropped_entries == 0
    starts = [e.start_time for e in drained]
    assert all(start > 0 for start in starts)


def test_worker_keeps_records_back_while_the_shared_ring_is_full():
    # A ring of 256 cells holds ~50 records; the worker records 1,000 and keeps the
    # rest back, then close() flushes them while the parent drains.
    perf = Performance(buffer_size=100_000, shared=True, ring_cells=256)
    try:
        (result,), drained = run_children(perf, [(3, 1000)], drain=True)
        drained += perf.drain()
        assert sorted(int(e.name.rsplit("/", 1)[1]) for e in drained) == list(range(1000))
        assert result[4] == 0  # the worker dropped nothing
        assert perf.stats().rejected_ring_full > 0
    finally:
        perf.close()


def test_buffer_semantics_apply_to_worker_entries():
    perf = Performance(buffer_size=5, shared=True)
    try:
        events: list = []
        perf.onresourcetimingbufferfull = events.append
        run_children(perf, [(4, 12)])
        # No loop here: the buffer-full task runs at the start of this call.
        entries = perf.get_entries()
        assert [e.name for e in entries] == [f"https://child4.example/{i}" for i in range(5)]
        assert len(events) == 1
        assert perf.dropped_entries == 7
    finally:
        perf.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_forked_child_records_through_the_owner_object():
    # The fork happens in a spawned, single-threaded child: forking this (multi-threaded)
    # test process is what Python 3.12+ deprecates, and may deadlock the child.
    results = SPAWN.Queue()
    proc = SPAWN.Process(target=workers.fork_from_a_single_thread, args=(200, results), daemon=True)
    proc.start()
    try:
        threads, child_exit, count, statuses, segment_kept = results.get(timeout=TIMEOUT)
    finally:
        proc.join(timeout=TIMEOUT)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    assert proc.exitcode == 0
    assert threads == 1 and child_exit == 0
    assert count == 200 and statuses == [201]
    assert segment_kept  # the forked child did not unlink the owner's segment


def test_attached_timeline_is_write_only(shared):
    worker = Performance.attach(shared.share_name)
    try:
        assert worker.time_origin == shared.time_origin
        assert worker.share_name == shared.share_name
        assert "attached" in repr(worker)
        for call in (worker.get_entries, lambda: worker.get_entries_by_type("resource"),
                     lambda: worker.get_entries_by_name("x"), worker.clear_resource_timings,
                     lambda: worker.set_resource_timing_buffer_size(3), worker.drain,
                     lambda: restiming.PerformanceObserver(lambda l, o: None, worker).observe(
                         type="resource")):
            with pytest.raises(SharedTimelineError):
                call()
        entry = worker.begin("https://attached.example/").finish(response_status=204)
        worker.flush()
        assert entry.name == "https://attached.example/"
    finally:
        worker.close()
    (got,) = shared.get_entries()
    assert got == entry
    assert shm_path(shared.share_name).exists()  # a worker's close() does not unlink


def test_attach_without_leading_slash(shared):
    worker = Performance.attach(shared.share_name.lstrip("/"))
    worker.begin("https://slash.example/").finish()
    worker.close()
    assert len(shared.get_entries()) == 1


def test_attach_to_a_missing_segment():
    with pytest.raises(SharedTimelineError):
        Performance.attach(f"/restiming-missing-{secrets.token_hex(6)}")
    for bad in ("", None, 42):
        with pytest.raises(SharedTimelineError):
            Performance.attach(bad)


@pytest.mark.parametrize("content", [b"", b"garbage", os.urandom(4096), os.urandom(4096 + 64 * 64),
                                     b"\0" * (4096 + 64 * 64)])
def test_attach_to_a_foreign_segment(content):
    name = f"restiming-foreign-{os.getpid()}-{secrets.token_hex(4)}"
    path = SHM / name
    path.write_bytes(content)
    try:
        with pytest.raises(SharedTimelineError):
            Performance.attach("/" + name)
    finally:
        path.unlink()


def test_segment_removed_after_close():
    perf = Performance(shared=True)
    path = shm_path(perf.share_name)
    assert path.exists()
    perf.close()
    assert not path.exists()
    perf.close()  # idempotent
    with pytest.raises(restiming.RestimingError):
        perf.get_entries()
    with pytest.raises(SharedTimelineError):
        Performance.attach(perf.share_name)


@pytest.mark.parametrize("close", [True, False], ids=["close", "exit-without-close"])
def test_segment_removed_when_the_owner_process_exits(close):
    results_q = SPAWN.Queue()
    exit_event = SPAWN.Event()
    proc = SPAWN.Process(target=workers.shared_owner, args=(results_q, exit_event, close), daemon=True)
    proc.start()
    try:
        name = results_q.get(timeout=TIMEOUT)
        assert shm_path(name).exists()
        exit_event.set()
        proc.join(timeout=TIMEOUT)
        assert proc.exitcode == 0
        assert not shm_path(name).exists()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def test_owner_observers_see_worker_entries_without_a_query():
    """A shared owner polls for worker records while observers listen."""
    import asyncio
    import multiprocessing

    import restiming
    from tests._core_workers import record_entries

    async def scenario():
        perf = restiming.Performance(shared=True)
        seen = []
        obs = restiming.PerformanceObserver(lambda lst, o: seen.extend(lst.get_entries()), perf)
        obs.observe(type="resource")
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=record_entries, args=(perf.share_name, 5))
        proc.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(seen) < 5 and loop.time() < deadline:
            await asyncio.sleep(0.01)  # no timeline call: only the poll can deliver
        await loop.run_in_executor(None, proc.join, 10)
        obs.disconnect()
        perf.close()
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 5


def test_segments_of_killed_owners_are_removed_by_the_next_owner():
    """An owner killed with SIGKILL cannot unlink its segment; the next shared
    timeline created on the machine removes it (its pid is gone)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import restiming

    code = ("import restiming, sys, time\n"
            "p = restiming.Performance(shared=True)\n"
            "print(p.share_name, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name.startswith("/restiming-")
        assert os.path.exists("/dev/shm" + name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert os.path.exists("/dev/shm" + name)  # leaked by the kill
    deadline = time.monotonic() + 5
    with restiming.Performance(shared=True) as perf:
        assert perf.share_name != name
    while os.path.exists("/dev/shm" + name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists("/dev/shm" + name)
    with pytest.raises(restiming.SharedTimelineError):
        restiming.Performance.attach(name)
