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


# -- late starts and coordinated-omission correction (issue 8, finding 17) --------------

def _open_loop_records(starts_and_intended_ms, total_ms=2.0) -> bytes:
    """One reused-connection 200 per (start, intended start), each taking ``total_ms``."""
    out = b""
    for st, intended in starts_and_intended_ms:
        out += pack(status=200, start_time=st, fetch_start=st, request_start=st + 0.1, request_end=st + 0.2,
                    final_response_headers_start=st + total_ms - 0.5, response_end=st + total_ms,
                    intended_start=intended, flags=0x4)
    return out


def test_late_start_threshold_is_the_documented_one_millisecond():
    from restiming._cli._stats import LATE_THRESHOLD_NS

    assert LATE_THRESHOLD_NS == 1_000_000  # README: "late starts: N over 1 ms"
    # Lateness 0, 0.5, 0.999, exactly 1 (not over), 1.05, 2 and 30 ms: three are over 1 ms.
    lateness = [0.0, 0.5, 0.999, 1.0, 1.05, 2.0, 30.0]
    recs = _open_loop_records([(100.0 + i * 50 + late, 100.0 + i * 50) for i, late in enumerate(lateness)])
    agg = Aggregator(open_loop=True)
    agg.add_span(recs, 0, len(recs))
    late = agg.late_summary()
    assert late["count"] == 3
    assert late["threshold_ms"] == 1.0
    assert late["early"] == 0
    assert late["max_ms"] == pytest.approx(30.0, rel=1e-3)
    assert late["p50_ms"] == pytest.approx(1.0, rel=1e-2)


def test_late_summary_counts_early_starts_and_records_them_as_zero():
    recs = _open_loop_records([(100.0, 100.5), (200.0, 200.0), (300.0, 297.0)])
    agg = Aggregator(open_loop=True)
    agg.add_span(recs, 0, len(recs))
    late = agg.late_summary()
    assert late["early"] == 1 and late["count"] == 1
    assert agg.late_hist.count == 3 and agg.late_hist.min == 0


def test_bench_summary_reports_the_aggregators_late_starts(monkeypatch):
    from restiming._cli import _stats

    monkeypatch.setattr(_stats, "LATE_THRESHOLD_NS", 5_000_000)
    recs = _open_loop_records([(100.0 + 10 * i, 100.0 + 10 * i - late) for i, late in enumerate([0.5, 2, 6, 9])])
    agg = Aggregator(open_loop=True)
    agg.add_span(recs, 0, len(recs))
    assert agg.late_summary()["count"] == 2 and agg.late_summary()["threshold_ms"] == 5.0


def test_corrected_latency_runs_from_the_intended_start():
    # Coordinated omission: requests that started late (queued behind a stall) count
    # from when they should have started. Raw totals are all 2 ms; corrected ones
    # are 2 ms plus each request's lateness.
    lateness = [0.0, 10.0, 20.0, 30.0, 40.0]
    recs = _open_loop_records([(1000.0 + i * 100 + late, 1000.0 + i * 100) for i, late in enumerate(lateness)])
    agg = Aggregator(open_loop=True, slot_width=10.0)
    agg.start(ORIGIN)
    agg.add_span(recs, 0, len(recs))
    hists = dict(zip(HIST_PHASES, agg.merged().hists))
    total, corrected = hists["total"], hists["corrected"]
    assert total.count == corrected.count == 5
    assert total.max == pytest.approx(2e6, rel=1e-3) and total.min == pytest.approx(2e6, rel=1e-3)
    assert corrected.min == pytest.approx(2e6, rel=1e-3)
    assert corrected.max == pytest.approx(42e6, rel=1e-3)
    assert corrected.percentile(50) == pytest.approx(22e6, rel=1e-3)
    # The open loop's latency-over-time series is the corrected latency too.
    (row,) = agg.timeline()
    assert row["count"] == 5 and row["max_ms"] == pytest.approx(42.0, rel=1e-3)


def test_closed_loop_has_no_correction():
    recs = b"".join(pack(status=200, start_time=s, fetch_start=s, response_end=s + 3) for s in (1.0, 5.0))
    agg = Aggregator(open_loop=False, slot_width=10.0)
    agg.start(ORIGIN)
    agg.add_span(recs, 0, len(recs))
    hists = dict(zip(HIST_PHASES, agg.merged().hists))
    assert hists["corrected"].count == 0 and hists["total"].count == 2
    assert agg.late_hist.count == 0
    (row,) = agg.timeline()
    assert row["max_ms"] == pytest.approx(3.0, rel=1e-3)


def test_open_loop_stamps_each_request_with_its_scheduled_start(scripted_server):
    # The generator hands fetch() the schedule's time, not the time it got round to the
    # arrival: every entry's intended_start is exactly start + k * 10 ms. With one
    # connection and a server taking 30 ms, arrivals every 10 ms queue inside their
    # entries (start on schedule, wait for the connection), so the stall is measured.
    import asyncio

    import restiming
    from restiming import clock
    from restiming._cli._load import generate
    from tests.peers.scripted import Send, Sleep, response

    server = scripted_server(lambda request: [Sleep(0.03), Send(response(200, body=b"ok"))])
    perf = restiming.Performance(buffer_size=1000)
    share = {"urls": [server.url("/")], "method": "GET", "headers": None, "body": None, "concurrency": 1,
             "requests": 12, "duration": None, "schedule": [(math.inf, 100.0)], "start_rate": 100.0,
             "warmup": 0, "warmup_rate": None, "max_in_flight": 100, "index": 0, "workers": 1,
             "client": {"timeout": 5.0}}
    start_ns = clock.now_ns() + 50_000_000
    counts = asyncio.run(generate(perf, share, start_ns, lambda: False))
    assert counts["sent"] == 12 and counts["dropped"] == 0
    entries = sorted(perf.get_entries(), key=lambda e: e.intended_start)
    assert len(entries) == 12
    origin_ns = perf._origin_ns
    expected = [(start_ns + k * 10_000_000 - origin_ns) / 1e6 for k in range(12)]
    assert [e.intended_start for e in entries] == pytest.approx(expected, abs=1e-6)
    assert all(e.start_time >= e.intended_start for e in entries)
    assert entries[-1].duration > 150  # queued behind eleven 30 ms responses
