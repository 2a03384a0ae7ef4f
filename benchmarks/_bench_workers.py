"""Producer processes for bench_ring.py (spawn needs importable functions).

Each worker waits for a "go" on its control queue, produces ``count`` records, and
waits again; ``None`` stops it. Process start-up stays out of the timed rounds."""

from __future__ import annotations

import time


def record_tuple(producer: int, seq: int, url: bytes) -> tuple:
    """The Python equivalent of one ring record: 15 stamps, 4 sizes, ids, strings."""
    return (producer, seq, *range(13), 1000, 1000, 0, 0, producer, 200, 0, url, b"fetch")


def ring_worker(name: str, producer: int, control, url: bytes) -> None:
    from restiming._binding import ffi, lib
    from restiming._ring import Ring

    ring = Ring.attach(name)
    rec = ffi.new("rt_record *")
    rec.stamp[0] = producer
    rec.encoded_body_size = rec.decoded_body_size = 1000
    rec.response_status = 200
    strings = url + b"fetch"
    rec.url_len = len(url)
    rec.text_len = 5
    full = lib.RT_PUB_RING_FULL
    publish = ring.publish
    stamps = rec.stamp
    try:
        while (count := control.get()) is not None:
            for seq in range(count):
                stamps[1] = seq
                while publish(rec, strings) & full:
                    time.sleep(0)
    finally:
        ring.close()


def queue_worker(producer: int, control, data, url: bytes) -> None:
    put = data.put
    while (count := control.get()) is not None:
        for seq in range(count):
            put(record_tuple(producer, seq, url))
