"""Memory per buffered entry, measured with tracemalloc over 1,000,000 entries.

Target: at most 256 bytes per entry plus its URL. The timeline keeps drained records
packed in 256 KiB chunks (no Python object per entry), so the figure is the record
(184 bytes), its strings, an 8-byte length and padding.

The 1,000,000 entries are copies of one entry recorded through ``perf.begin`` /
``rec.finish`` (each with its own URL), published straight into the timeline's ring
and pumped into its buffer the way ``finish()`` does, so the fill takes seconds under
tracemalloc instead of minutes; a second benchmark records 100,000 entries through the
public API end to end and must land on the same figure. Baseline: the same entries
kept as Python objects (a slotted object per entry, float and str attributes, in a
list), over 100,000 entries."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import restiming
from restiming._binding import ffi, lib
from restiming._fields import RECORD

ENTRIES = 1_000_000
SMALL = 100_000
TARGET = 256
_RING_FULL = lib.RT_PUB_RING_FULL


def url(i: int) -> str:
    return f"https://example.test/resource/{i:010d}"  # 40 characters, ASCII


URL_LEN = len(url(0))


class PyEntry:
    __slots__ = ("name", "entry_type", "initiator_type", "start_time", "fetch_start",
                 "domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
                 "secure_connection_start", "request_start", "response_start", "response_end",
                 "transfer_size", "encoded_body_size", "decoded_body_size", "response_status",
                 "next_hop_protocol")

    def __init__(self, name: str, t: float) -> None:
        self.name = name
        self.entry_type = "resource"
        self.initiator_type = "fetch"
        self.start_time = self.fetch_start = t
        self.domain_lookup_start = self.domain_lookup_end = t + 0.1
        self.connect_start = self.connect_end = t + 0.2
        self.secure_connection_start = 0.0
        self.request_start = t + 0.3
        self.response_start = t + 0.4
        self.response_end = t + 0.5
        self.transfer_size = 1300
        self.encoded_body_size = self.decoded_body_size = 1000
        self.response_status = 200
        self.next_hop_protocol = "http/1.1"


def measure(fill) -> int:
    """Bytes still allocated (tracemalloc) by what ``fill()`` returns."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def record_one(perf, i: int):
    rec = perf.begin(url(i))
    rec.stamp("domain_lookup_start")
    rec.stamp("request_start")
    return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=1000,
                      next_hop_protocol="http/1.1")


def bench_memory(benchmark, report, label: str, count: int, fill) -> float:
    result = {}

    def run():
        result["bytes"] = measure(fill)

    benchmark.pedantic(run, rounds=1, iterations=1)
    per_entry = result["bytes"] / count - URL_LEN
    benchmark.extra_info["bytes_per_entry"] = per_entry
    target = "" if benchmark.extra_info.get("baseline") else f"; target <= {TARGET}"
    report(f"memory: {label}: {per_entry:.1f} bytes/entry beyond the {URL_LEN}-char URL "
           f"(tracemalloc, {count:,} entries{target})")
    return per_entry


@pytest.mark.benchmark(group="memory per buffered entry")
def test_baseline_python_objects_memory(benchmark, report):
    benchmark.extra_info["baseline"] = True
    bench_memory(benchmark, report, "Python objects (baseline)", SMALL,
                 lambda: [PyEntry(url(i), float(i)) for i in range(SMALL)])


@pytest.mark.benchmark(group="memory per buffered entry")
def test_buffered_entry_memory(benchmark, report):
    def fill():
        perf = restiming.Performance(buffer_size=ENTRIES)
        record_one(perf, 0)
        perf.flush()
        buf, off = next(perf._store.records())
        template = bytes(buf[off:off + RECORD.size])
        rec = ffi.new("rt_record *")
        ffi.memmove(rec, template, RECORD.size)
        text = bytes(buf[off + RECORD.size + rec.url_len:off + RECORD.size + rec.url_len + rec.text_len])
        publish = perf._ring.publish
        for i in range(1, ENTRIES):
            strings = url(i).encode() + text
            while publish(rec, strings) & _RING_FULL:
                perf.flush()  # the owner pumps the ring into its buffer, as finish() does
        perf.flush()
        assert perf.stats().primary == ENTRIES and perf.dropped_entries == 0
        assert perf._store.count == ENTRIES
        return perf

    per_entry = bench_memory(benchmark, report, "restiming buffer", ENTRIES, fill)
    assert per_entry <= TARGET


@pytest.mark.benchmark(group="memory per buffered entry")
def test_buffered_entry_memory_public_api(benchmark, report):
    def fill():
        perf = restiming.Performance(buffer_size=SMALL)
        for i in range(SMALL):
            record_one(perf, i)
        perf.flush()
        assert perf._store.count == SMALL
        return perf

    per_entry = bench_memory(benchmark, report, "restiming buffer via begin/finish", SMALL, fill)
    assert per_entry <= TARGET
