"""Code the native-core tests run in child processes (spawn needs importable functions).

Records made here are self-describing: producer id and sequence number in the first two
stamps, every other field and the URL derived from them, so a consumer can tell a torn
record (bytes of two records mixed) from a lost or duplicated one.
"""

from __future__ import annotations

import os
import time

#: Every 997th record carries an 8 KiB URL (records span many cells and wrap).
BIG_EVERY = 997
BIG_URL = 8192


def url_for(producer: int, seq: int) -> bytes:
    head = b"https://p%d.example/%d/" % (producer, seq)
    size = BIG_URL if seq % BIG_EVERY == 0 else 24 + seq % 300
    filler = b"%x-" % (producer * 1_000_003 + seq)
    return (head + filler * (size // len(filler) + 1))[:size]


def text_for(producer: int, seq: int) -> bytes:
    return b"fetch\0h%d" % (seq % 3)


def stamp_for(producer: int, seq: int, slot: int) -> int:
    return producer * 1_000_000_007 + seq * 31 + slot


def fill(rec, producer: int, seq: int) -> bytes:
    """Fill ``rec`` (an ``rt_record *``) for (producer, seq); return its strings."""
    stamps = rec.stamp
    stamps[0] = producer
    stamps[1] = seq
    for slot in range(2, 15):
        stamps[slot] = stamp_for(producer, seq, slot)
    rec.encoded_body_size = seq
    rec.decoded_body_size = seq * 2
    rec.connection_id = producer
    rec.response_status = 200 + seq % 300
    url = url_for(producer, seq)
    text = text_for(producer, seq)
    rec.url_len = len(url)
    rec.text_len = len(text)
    return url + text


def check(buf, off: int, n: int):
    """Return (producer, seq) of the drained record at ``buf[off:off+n]``; raise if torn."""
    from restiming._fields import RECORD

    v = RECORD.unpack_from(buf, off)
    producer, seq = v[0], v[1]
    for slot in range(2, 15):
        if v[slot] != stamp_for(producer, seq, slot):
            raise AssertionError(f"torn stamps in record {producer}/{seq}")
    if v[17] != seq or v[18] != seq * 2 or v[21] != producer or v[22] != 200 + seq % 300:
        raise AssertionError(f"torn sizes in record {producer}/{seq}")
    url = url_for(producer, seq)
    text = text_for(producer, seq)
    if (v[24], v[25]) != (len(url), len(text)) or n != RECORD.size + len(url) + len(text):
        raise AssertionError(f"torn lengths in record {producer}/{seq}")
    if bytes(buf[off + RECORD.size : off + n]) != url + text:
        raise AssertionError(f"torn strings in record {producer}/{seq}")
    return producer, seq


def publish_range(ring, producer: int, count: int, deadline: float) -> int:
    """Publish ``count`` records for ``producer``, retrying on RING_FULL; return retries."""
    from restiming._binding import ffi, lib

    full = lib.RT_PUB_RING_FULL
    rec = ffi.new("rt_record *")
    retries = 0
    for seq in range(count):
        strings = fill(rec, producer, seq)
        while ring.publish(rec, strings) & full:
            retries += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"producer {producer} stuck at {seq}: ring stays full")
            time.sleep(0)
    return retries


def ring_producer(name: str, producer: int, count: int, timeout: float) -> None:
    """Child process: attach to the shared ring ``name`` and publish ``count`` records."""
    from restiming._ring import Ring

    ring = Ring.attach(name)
    try:
        publish_range(ring, producer, count, time.monotonic() + timeout)
    finally:
        ring.close()


def timeline_producer(name: str, producer: int, count: int, result_queue, close_timeout: float = 30.0) -> None:
    """Child process: record ``count`` entries through ``Performance.attach(name)``.

    Reports (producer, now() before, now() after, time_origin, dropped, errors)."""
    import restiming

    errors: list[str] = []
    try:
        perf = restiming.Performance.attach(name)
        before = perf.now()
        for seq in range(count):
            rec = perf.begin(f"https://child{producer}.example/{seq}")
            rec.stamp("request_start")
            rec.finish(response_status=200, encoded_body_size=seq)
        after = perf.now()
        for query in ("get_entries", "drain", "clear_resource_timings"):
            try:
                getattr(perf, query)()
            except restiming.SharedTimelineError:
                pass
            else:
                errors.append(f"{query}() on an attached timeline did not raise")
        perf.close(timeout=close_timeout)
        result_queue.put((producer, before, after, perf.time_origin, perf.dropped_entries, errors))
    except BaseException as exc:  # report instead of dying silently
        result_queue.put((producer, None, None, None, None, errors + [repr(exc)]))
        raise


def forked_producer(perf, count: int) -> None:
    """Forked child: record through the owner's own object (it only produces here)."""
    for seq in range(count):
        perf.begin(f"https://forked.example/{seq}").finish(response_status=201)
    perf.close()


def fork_from_a_single_thread(count: int, result_queue) -> None:
    """Spawned child: own a shared timeline, fork a grandchild that records ``count``
    entries through the owner's object, and report what the owner then sees.

    It forks while it is the only thread (before the queue starts its feeder thread),
    so Python 3.12+ has nothing to warn about; the DeprecationWarning that a
    multi-threaded fork raises is an error here, not a silent pass."""
    import threading
    import warnings

    from restiming import Performance

    perf = Performance(buffer_size=100_000, shared=True)
    try:
        threads = threading.active_count()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                forked_producer(perf, count)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        entries = perf.get_entries()
        segment_kept = os.path.exists("/dev/shm/" + perf.share_name.lstrip("/"))
        result_queue.put((threads, os.waitstatus_to_exitcode(status), len(entries),
                          sorted({e.response_status for e in entries}), segment_kept))
    finally:
        perf.close()


def shared_owner(result_queue, exit_event, close: bool) -> None:
    """Child process: own a shared timeline, report its name, exit when told."""
    import restiming

    perf = restiming.Performance(shared=True)
    result_queue.put(perf.share_name)
    exit_event.wait(30)
    if close:
        perf.close()
    # Otherwise the interpreter's exit must unlink the segment by itself.


def record_entries(name: str, count: int) -> None:
    """Attach to a shared timeline and record ``count`` plain entries."""
    import restiming

    perf = restiming.Performance.attach(name)
    for i in range(count):
        perf.begin(f"http://worker.test/{i}").finish(response_status=200)
    perf.close()
