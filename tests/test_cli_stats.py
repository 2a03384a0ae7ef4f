"""The bench's pure parts: phases from raw records, batch histograms, HdrHistogram
encoding (the ``hdrhistogram`` package as oracle), thresholds, schedules."""

from __future__ import annotations

import math
import random
import struct

import pytest

from restiming._cli._common import UsageError
from restiming._cli._hdr import decode_histogram, encode_histogram
from restiming._cli._hist import Histogram
from restiming._cli._load import arrivals
from restiming._cli._stats import HIST_PHASES, MAX_SLOTS, Aggregator, phases_ns
from restiming._cli._thresholds import parse_expect_status, parse_threshold
from restiming._entry import decode_record
from restiming._fields import RECORD, SLOT, STAMPS, TEXTS
from restiming.phases import phase_durations

ORIGIN = 10**12


def pack(url="http://a/", status=200, flags=0, error="", initiator="fetch", **stamps) -> bytes:
    """One length-prefixed packed record, as the ring drains it."""
    values = [0] * len(STAMPS)
    for name, ms in stamps.items():
        values[SLOT[name]] = ORIGIN + int(ms * 1e6) if ms else 0
    texts = [""] * len(TEXTS)
    texts[TEXTS.index("initiator_type")] = initiator
    texts[TEXTS.index("error")] = error
    u, t = url.encode(), "\0".join(texts).encode()
    body = RECORD.pack(*values, 10, 10, 0, 0, 1, status, flags, len(u), len(t)) + u + t
    body += b"\0" * (-len(body) % 8)
    return struct.pack("<Q", RECORD.size + len(u) + len(t)) + body


NEW_TLS = dict(start_time=1, fetch_start=1, domain_lookup_start=1.5, domain_lookup_end=2, connect_start=2,
               secure_connection_start=3, connect_end=5, request_start=5.1, request_end=5.2,
               final_response_headers_start=9, response_end=12, intended_start=0.5)
REUSED = dict(start_time=1, fetch_start=1, domain_lookup_start=1, domain_lookup_end=1, connect_start=1,
              connect_end=1, request_start=1.4, request_end=1.5, first_interim_response_start=2,
              final_response_headers_start=3, response_end=3)
OPAQUE = dict(start_time=1, fetch_start=1, response_end=4)
CASES = [(NEW_TLS, 0), (REUSED, 0x4), (REUSED, 0), (OPAQUE, 0x8),
         (dict(NEW_TLS, secure_connection_start=0), 0), (dict(NEW_TLS, request_end=0), 0),
         (dict(NEW_TLS, request_end=10), 0)]


@pytest.mark.parametrize("stamps,flags", CASES)
def test_phases_from_ints_agree_with_phase_durations(stamps, flags):
    packed = pack(flags=flags, **stamps)
    ints = phases_ns(RECORD.unpack_from(packed, 8))
    floats = phase_durations(decode_record(packed, 8, ORIGIN))
    for name in HIST_PHASES:
        if floats[name] is None:
            assert ints[name] is None, name
        else:
            assert ints[name] == pytest.approx(floats[name] * 1e6, abs=2), name


@pytest.mark.parametrize("stamps,flags", CASES)
def test_aggregator_hot_loop_matches_the_reference(stamps, flags):
    agg = Aggregator(open_loop=True)
    agg.add_span(pack(flags=flags, **stamps), 0, len(pack(flags=flags, **stamps)))
    ref = phases_ns(RECORD.unpack_from(pack(flags=flags, **stamps), 8))
    for name, h in zip(HIST_PHASES, agg.merged().hists):
        assert (h.count, h.max) == ((0, 0) if ref[name] is None else (1, ref[name])), name


def test_outcomes_groups_and_warmup():
    recs = (pack(url="http://a/1", status=200, **REUSED) * 3 + pack(url="http://a/2", status=503, **REUSED)
            + pack(url="http://a/2", status=0, error="connect", **OPAQUE)
            + pack(url="http://a/1", status=200, initiator="warmup", **REUSED))
    agg = Aggregator(open_loop=False, group_by="url", warmup=True)
    assert agg.add_span(recs, 0, len(recs)) == 6
    assert agg.warmup_entries == 1
    groups = {g.name: g for g in agg.all_groups()}
    assert groups["http://a/1"].statuses == {200: 3}
    assert groups["http://a/2"].statuses == {503: 1} and groups["http://a/2"].errors == {"connect": 1}
    assert agg.total == 5 and agg.responses == 4
    assert [len(agg.samples[k]) for k in ("reused", "unexpected", "error")] == [3, 1, 1]


def test_time_series_stays_bounded_and_loses_no_request():
    agg = Aggregator(open_loop=False, slot_width=1.0)
    agg.start(ORIGIN)
    n = 2 * MAX_SLOTS + 100
    for i in range(n):  # one request a second, for over 20 minutes
        s = i * 1000.0
        if i % 10:
            rec = pack(status=200, start_time=s, fetch_start=s, response_end=s + 5)
        else:
            rec = pack(status=0, error="reset", start_time=s, fetch_start=s, response_end=s + 5)
        agg.add_span(rec, 0, len(rec))
    rows = agg.timeline()
    assert len(rows) <= MAX_SLOTS and rows[0]["width"] == 4.0
    assert sum(r["count"] for r in rows) == n
    assert sum(r["errors"] for r in rows) == (n + 9) // 10
    assert all(4.5 <= r["p50_ms"] <= 5.5 for r in rows if r["count"] > r["errors"])


def test_record_batch_equals_record():
    rng = random.Random(5)
    values = [int(rng.lognormvariate(13, 2)) for _ in range(20_000)] + [0, 1, 5 * 10**12]
    a, b = Histogram(), Histogram()
    for v in values:
        a.record(v)
    b.record_batch(values)
    assert a == b
    with pytest.raises(ValueError):
        b.record_batch([1, -1])


def test_hdr_blob_decodes_with_hdrhistogram_to_the_same_percentiles():
    hdrh = pytest.importorskip("hdrh.histogram")
    rng = random.Random(7)
    h = Histogram()
    h.record_batch([int(rng.lognormvariate(14, 1.2)) for _ in range(1000)])
    theirs = hdrh.HdrHistogram.decode(encode_histogram(h))
    assert theirs.get_total_count() == h.count
    # 1000 values: p/100 * N is an integer for these, so both rank rules agree.
    for p in (50, 90, 99, 99.9):
        assert theirs.get_value_at_percentile(p) == h.percentile(p), p
    # Their encoding decodes with ours, counts intact.
    other = hdrh.HdrHistogram(1000, 3_600_000_000_000, 3)
    for v in (1500, 2_000_000, 2_000_000, 70_000_000):
        other.record_value(v)
    back = decode_histogram(other.encode())
    assert back.count == 4 and back.percentile(50) == other.get_value_at_percentile(50)
    assert decode_histogram(encode_histogram(h)).percentiles([50, 99]) == h.percentiles([50, 99])


THRESHOLDS = [
    ("total:p(99)<250ms", ("total", "p", 99.0, "<", 250.0)),
    ("total:p(99.9) <= 1s", ("total", "p", 99.9, "<=", 1000.0)),
    ("wait:avg>500us", ("wait", "avg", None, ">", 0.5)),
    ("corrected:max>=2", ("corrected", "max", None, ">=", 2.0)),
    ("connect:min<1ms", ("connect", "min", None, "<", 1.0)),
    ("tls:med<3ms", ("tls", "med", None, "<", 3.0)),
    ("failures:rate<1%", ("failures", "rate", None, "<", 0.01)),
    ("failures:rate<=0.05", ("failures", "rate", None, "<=", 0.05)),
    ("rps:avg>100", ("rps", "avg", None, ">", 100.0)),
]


@pytest.mark.parametrize("text,expected", THRESHOLDS)
def test_threshold_grammar(text, expected):
    t = parse_threshold(text)
    assert (t.metric, t.agg, t.percentile, t.op, t.number) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["total<250", "total:p99<250ms", "total:p(0)<1", "total:p(101)<1",
                                  "bogus:avg<1", "total:rate<1", "failures:avg<1", "failures:rate<150%",
                                  "rps:avg>10ms", "total:avg<1%", "total:avg=1", "total:avg<+1", ""])
def test_threshold_parse_errors_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_threshold(text)


def test_fail_if_grammar():
    t = parse_threshold("total:p(99)>+10%", compare=True)
    assert t.relative and t.number == 10 and t.holds(12) and not t.holds(8)
    t = parse_threshold("wait:p(50)>+2ms", compare=True)
    assert not t.relative and t.number == 2
    with pytest.raises(UsageError):
        parse_threshold("failures:rate>+1ms", compare=True)


def test_expect_status():
    ok, text = parse_expect_status("200,201,300-399")
    assert [ok(s) for s in (200, 201, 202, 301, 399, 400, 0, 1200)] == [True, True, False, True, True, False,
                                                                          False, False]
    assert text == "200,201,300-399"
    ok, _ = parse_expect_status("2xx")
    assert ok(204) and not ok(304)
    for bad in ("abc", "99", "500-400", "200-1000"):
        with pytest.raises(UsageError):
            parse_expect_status(bad)


def test_arrivals_constant_and_ramping():
    const = list(arrivals([(2.0, 100.0)], 100.0))
    assert len(const) == 200 and const[0] == 0 and const[1] == 10_000_000
    # 0 -> 100 req/s over 10 s: 500 arrivals, denser towards the end.
    ramp = list(arrivals([(10.0, 100.0)], 0.0))
    assert len(ramp) == 500
    assert all(b >= a for a, b in zip(ramp, ramp[1:]))
    assert ramp[-1] - ramp[-2] < ramp[2] - ramp[1]
    # N(t) = 5 t^2: arrival k at sqrt(k / 5) s.
    assert math.isclose(ramp[125] / 1e9, 5.0, rel_tol=1e-6)
    down = list(arrivals([(1.0, 100.0), (2.0, 0.0)], 100.0))
    assert len(down) == 200 and max(down) < 3e9
