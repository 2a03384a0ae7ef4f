"""Timelines under faults (issue 8, findings 13-17): close() racing producer threads,
damaged records, bad segment names, truncated and foreign segments, a producer dying
mid-publish, and the bounds of the worker backlog and the secondary buffer.

Damage is done the way another process would: by writing into the segment's file in
/dev/shm. Layout used here (csrc/rt_ring.c): a 4096-byte header (magic @0, version @8,
cell_size @12, ncells @16, record_size @24, tail @64, head @128), then 64-byte cells,
each an 8-byte seq then 56 payload bytes; a record's first 8 payload bytes are its
length. Anything that could crash the interpreter runs in a child process.
"""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from restiming import Performance, RestimingError, SharedTimelineError
from restiming._fields import RECORD, TEXTS

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm (POSIX shared memory)")
ROOT = Path(__file__).resolve().parent.parent
HEADER, CELL, PAYLOAD = 4096, 64, 56


def shm_file(perf: Performance) -> Path:
    return SHM / perf.share_name.lstrip("/")


def cells_of(url: str, text: str = "fetch" + "\0" * (len(TEXTS) - 1)) -> int:
    n = RECORD.size + len(url.encode()) + len(text.encode())
    return (n + 8 + PAYLOAD - 1) // PAYLOAD


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def shared():
    perf = Performance(buffer_size=1000, shared=True, ring_cells=256)
    yield perf
    perf.close()


# ------------------------------------------------------------------ finding 13
def test_close_while_threads_record_never_crashes():
    """close() on one thread while others finish entries: a use-after-free SIGSEGV
    before; now the producers get RestimingError once the timeline is closed."""
    run = run_child("""
        import random, threading, time
        import restiming
        for round in range(150):
            perf = restiming.Performance(buffer_size=10**6)
            stop = False
            errors = []
            def produce():
                while not stop:
                    try:
                        rec = perf.begin("https://race.test/x")
                        rec.stamp("request_start")
                        rec.finish(response_status=200)
                    except restiming.RestimingError:
                        return
                    except BaseException as exc:
                        errors.append(exc)
                        return
            threads = [threading.Thread(target=produce) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(random.random() * 0.002)
            perf.close()
            stop = True
            for t in threads:
                t.join()
            assert not errors, errors
        print("ok")
    """)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (run.returncode, run.stdout, run.stderr)


def test_closed_timeline_refuses_publish_and_queries():
    perf = Performance()
    rec = perf.begin("https://closed.test/")
    perf.close()
    with pytest.raises(RestimingError, match="closed"):
        rec.finish()
    with pytest.raises(RestimingError, match="closed"):
        perf.stats()
    perf.close()  # idempotent


# ------------------------------------------------------------------ finding 15
def _record_three(perf):
    urls = [f"https://corrupt.test/{i}" for i in range(3)]
    for url in urls:
        perf.begin(url).finish(response_status=200)
    return urls


@pytest.mark.parametrize("bad_length", [
    10**9,                      # beyond any record limit
    5,                          # shorter than the fixed record
    RECORD.size + 26 + 14 + 56,  # plausible, but not what url_len + text_len say
], ids=["huge", "tiny", "mismatch"])
def test_one_corrupt_record_is_skipped_and_counted(shared, bad_length):
    urls = _record_three(shared)
    first = cells_of(urls[0])
    with open(shm_file(shared), "r+b") as f:
        f.seek(HEADER + first * CELL + 8)  # the second record's length word
        f.write(struct.pack("<Q", bad_length))
    shared.begin("https://corrupt.test/after").finish(response_status=200)
    names = [e.name for e in shared.get_entries()]
    assert names == [urls[0], urls[2], "https://corrupt.test/after"]
    assert shared.stats().corrupt_records == 1
    shared.begin("https://corrupt.test/later").finish(response_status=200)
    assert len(shared.drain()) == 4  # the owner is not wedged


def test_records_before_a_corrupt_one_are_delivered_in_the_same_drain(shared):
    urls = _record_three(shared)
    with open(shm_file(shared), "r+b") as f:  # damage the third: the first two come first
        f.seek(HEADER + (cells_of(urls[0]) + cells_of(urls[1])) * CELL + 8)
        f.write(struct.pack("<Q", 10**9))
    assert [e.name for e in shared.get_entries()] == urls[:2]
    assert shared.stats().corrupt_records == 1


# ------------------------------------------------------------------ finding 16
@pytest.mark.parametrize("name", ["/", "", "/a/b", "x" * 300, "/" + "y" * 300, "/../../etc/passwd",
                                  "..", "/restiming-1-abc\0def", 42])
def test_bad_segment_names_are_shared_timeline_errors(name):
    with pytest.raises(SharedTimelineError):
        Performance.attach(name)


def test_truncated_segment_is_an_error_not_sigbus():
    run = run_child("""
        import os, restiming
        perf = restiming.Performance(shared=True, ring_cells=256)
        worker = restiming.Performance.attach(perf.share_name)
        worker.begin("https://before.test/").finish(response_status=200)
        os.truncate("/dev/shm" + perf.share_name, 4096)
        for call in (lambda: worker.begin("https://after.test/").finish(response_status=200),
                     perf.get_entries, perf.drain):
            try:
                call()
            except restiming.SharedTimelineError as exc:
                assert "truncated" in str(exc), exc
            else:
                raise AssertionError("no error after truncation")
        worker.close(timeout=0)
        perf.close()
        print("ok")
    """)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (run.returncode, run.stdout, run.stderr)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a segment owned by another user")
def test_stale_segment_of_another_user_is_left_alone():
    dead = 2**22 + 12345  # above the default pid_max: no such process
    path = SHM / f"restiming-{dead}-0123456789ab"
    path.write_bytes(b"\0" * 4096)
    try:
        os.chown(path, 65534, 65534)
        perf = Performance(shared=True)
        perf.close()
        assert path.exists()
    finally:
        path.unlink(missing_ok=True)


def test_stale_segment_of_ours_is_removed():
    dead = 2**22 + 12346
    path = SHM / f"restiming-{dead}-0123456789ab"
    path.write_bytes(b"\0" * 4096)
    try:
        Performance(shared=True).close()
        assert not path.exists()
    finally:
        path.unlink(missing_ok=True)


def _fake_dead_reservation(perf: Performance, k: int, marked: bool) -> None:
    """What a producer that died after reserving k cells leaves: the tail moved on,
    nothing committed (and, if it got that far, its reserved mark in the first cell)."""
    with open(shm_file(perf), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        tail = struct.unpack_from("<Q", m, 64)[0]
        seq = (1 << 63) | (k << 32) | (tail & 0xFFFFFFFF) if marked else 0
        struct.pack_into("<Q", m, HEADER + (tail % 256) * CELL, seq)
        struct.pack_into("<Q", m, 64, tail + k)


@pytest.mark.parametrize("marked", [True, False], ids=["after-mark", "before-mark"])
def test_producer_dying_mid_publish_is_skipped_after_the_bound(shared, marked):
    shared.begin("https://stuck.test/before").finish(response_status=200)
    _fake_dead_reservation(shared, 5, marked)
    worker = Performance.attach(shared.share_name)
    worker.begin("https://stuck.test/after").finish(response_status=200)
    worker.close()
    shared._stuck.timeout = 0.05
    assert [e.name for e in shared.get_entries()] == ["https://stuck.test/before"]  # stalled for now
    time.sleep(0.1)
    assert [e.name for e in shared.get_entries()] == ["https://stuck.test/before", "https://stuck.test/after"]
    assert shared.stats().lost_stuck == 1


# ------------------------------------------------------------------ finding 17
def _header_field(perf, fmt, offset, value):
    data = bytearray(shm_file(perf).read_bytes())
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize("field, fmt, offset, value", [
    ("version", "<I", 8, 99),
    ("cell_size", "<I", 12, 128),
    ("record_size", "<Q", 24, 160),
    ("ncells", "<Q", 16, 100),       # not a power of two
    ("ncells-size", "<Q", 16, 512),  # valid, but not the segment's size
])
def test_attach_checks_every_header_field(shared, field, fmt, offset, value):
    name = f"restiming-test-{os.getpid()}-{field}"
    path = SHM / name
    path.write_bytes(_header_field(shared, fmt, offset, value))
    try:
        with pytest.raises(SharedTimelineError, match="not a restiming timeline"):
            Performance.attach(name)
    finally:
        path.unlink()


def test_attach_checks_the_segment_size(shared):
    name = f"restiming-test-{os.getpid()}-size"
    path = SHM / name
    path.write_bytes(shm_file(shared).read_bytes() + b"\0" * CELL)
    try:
        with pytest.raises(SharedTimelineError, match="not a restiming timeline"):
            Performance.attach(name)
    finally:
        path.unlink()


def _fill_until_kept_back(worker: Performance) -> int:
    n = 0
    while not worker._backlog:
        worker.begin(f"https://backlog.test/{n}").finish(response_status=200)
        n += 1
        assert n < 10_000, "the ring never filled"
    return n


def test_worker_backlog_beyond_its_limit_is_dropped_and_counted(shared):
    worker = Performance.attach(shared.share_name)
    worker._backlog.limit = 3
    sent = _fill_until_kept_back(worker)
    for i in range(10):
        worker.begin(f"https://backlog.test/more/{i}").finish(response_status=200)
    assert len(worker._backlog) == 3
    assert worker.dropped_entries == 1 + 10 - 3
    worker.close(timeout=0.5)  # the owner drains nothing meanwhile: the backlog cannot go
    assert worker.dropped_entries == 1 + 10
    assert len(shared.drain()) == sent - 1


def test_worker_close_delivers_its_backlog_when_the_owner_drains(shared):
    worker = Performance.attach(shared.share_name)
    sent = _fill_until_kept_back(worker)
    worker.begin("https://backlog.test/last").finish(response_status=200)
    assert len(worker._backlog) == 2
    received = shared.drain()
    worker.close(timeout=5)
    received += shared.drain()
    assert worker.dropped_entries == 0
    assert len(received) == sent + 1


def test_worker_flush_retries_the_backlog(shared):
    worker = Performance.attach(shared.share_name)
    sent = _fill_until_kept_back(worker)
    received = shared.drain()
    worker.flush()
    assert not worker._backlog
    assert len(received) + len(shared.drain()) == sent
    worker.close()


def test_secondary_buffer_holds_exactly_ten_thousand():
    perf = Performance(buffer_size=0, ring_cells=1 << 18)
    try:
        for i in range(10_001):
            perf.begin(f"https://secondary.test/{i}").finish(response_status=200)
        stats = perf.stats()
        assert stats.secondary_cap == 10_000
        assert (stats.secondary, stats.dropped_overflow) == (10_000, 1)
    finally:
        perf.close()
