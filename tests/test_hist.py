"""The HdrHistogram-style histogram against exact percentiles computed by sorting."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restiming._cli._hist import Histogram, rank_for_percentile

HOUR_NS = 3_600_000_000_000
PERCENTILES = (0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0)

values_ns = st.lists(
    st.one_of(
        st.integers(0, 5_000),                     # below the lowest discernible value
        st.integers(0, 10_000_000),                # sub-10 ms latencies
        st.integers(0, HOUR_NS),                   # the whole trackable range
    ),
    min_size=1,
    max_size=400,
)
percentile = st.one_of(st.sampled_from(PERCENTILES), st.floats(0.0, 100.0))


def exact_percentile(values: list[int], p: float) -> int:
    """The value at rank ceil(p / 100 * n) (1-based, at least 1) of the sorted values,
    computed with exact fractions from the decimal repr of p."""
    ordered = sorted(values)
    n = len(ordered)
    rank = max(1, math.ceil(Fraction(repr(float(p))) * n / 100))
    return ordered[min(rank, n) - 1]


def within_precision(estimate: int, exact: int, lowest: int = 1_000) -> bool:
    return exact <= estimate <= exact + max(exact * 1e-3, lowest)


@settings(max_examples=300, deadline=None)
@given(values_ns, percentile)
def test_percentile_within_precision_of_exact(values, p):
    h = Histogram()
    for v in values:
        h.record(v)
    exact = exact_percentile(values, p)
    estimate = h.percentile(p)
    assert within_precision(estimate, exact), (p, exact, estimate)
    assert h.min <= estimate <= h.max


@settings(max_examples=100, deadline=None)
@given(values_ns)
def test_all_percentiles_in_one_pass_agree(values):
    h = Histogram()
    h.record_many(values)
    assert h.percentiles(PERCENTILES) == [h.percentile(p) for p in PERCENTILES]
    assert h.count == len(values)
    assert h.min == min(values) and h.max == max(values)
    assert h.mean == pytest.approx(sum(values) / len(values))
    assert h.percentile(0) == min(values) and h.percentile(100) == max(values)


@settings(max_examples=100, deadline=None)
@given(values_ns, values_ns)
def test_merge_equals_histogram_of_concatenation(a, b):
    ha, hb, hab = Histogram(), Histogram(), Histogram()
    ha.record_many(a)
    hb.record_many(b)
    hab.record_many(a + b)
    ha.merge(hb)
    assert ha == hab
    assert ha.percentiles(PERCENTILES) == hab.percentiles(PERCENTILES)


@settings(max_examples=100, deadline=None)
@given(values_ns)
def test_round_trip_through_json(values):
    h = Histogram()
    h.record_many(values)
    data = json.loads(json.dumps(h.to_dict()))
    back = Histogram.from_dict(data)
    assert back == h
    assert back.percentiles(PERCENTILES) == h.percentiles(PERCENTILES)
    assert (back.count, back.min, back.max, back.mean) == (h.count, h.min, h.max, h.mean)


def test_compact_form_keeps_only_non_zero_counters():
    h = Histogram()
    h.record(5_000_000, count=1000)
    h.record(7_000_000)
    assert len(h.to_dict()["counts"]) == 2


def test_memory_is_constant_whatever_the_count():
    h = Histogram()
    before = h.memory_bytes()
    for i in range(1_000_000):
        h.record(1_000 + (i * 7919) % 2_000_000_000)
    assert h.memory_bytes() == before
    assert h.count == 1_000_000
    # Default layout: 23 buckets of 1024 half-buckets, 8 bytes each.
    assert before == 24 * 1024 * 8


def test_values_above_highest_are_clamped_and_counted():
    h = Histogram(highest=10_000_000)
    h.record(5_000)
    h.record(50_000_000, count=3)
    assert h.clamped == 3
    assert h.max == 50_000_000  # exact, not clamped
    # Ranks 2 and 3 land in the clamped counter; the last rank is the exact max.
    assert within_precision(h.percentile(50), 10_000_000)
    assert h.percentile(100) == 50_000_000


def test_lowest_discernible_sets_the_absolute_precision():
    h = Histogram(lowest=1)
    h.record_many([1, 2, 3, 2047, 2048, 2049])
    # Below 2048 with a unit of 1, every value is exact.
    assert h.percentiles([0, 20, 40, 60]) == [1, 2, 3, 2047]


def test_empty_histogram():
    h = Histogram()
    assert (h.count, h.min, h.max, h.mean, h.percentile(99)) == (0, 0, 0, 0.0, 0)
    assert h.summary_ms()["p99_ms"] == 0.0


def test_summary_ms_keys():
    h = Histogram()
    h.record_many([1_000_000, 2_000_000, 3_000_000])
    s = h.summary_ms()
    assert set(s) == {"count", "min_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"}
    assert s["min_ms"] == 1.0 and s["max_ms"] == 3.0 and s["mean_ms"] == 2.0
    assert s["p50_ms"] == pytest.approx(2.0, rel=1e-3)


def test_bad_input():
    h = Histogram()
    with pytest.raises(ValueError):
        h.record(-1)
    with pytest.raises(ValueError):
        h.percentile(100.5)
    with pytest.raises(ValueError):
        h.merge(Histogram(lowest=1))
    with pytest.raises(ValueError):
        Histogram(lowest=0)
    data = h.to_dict()
    data["counts"] = [[10**9, 1]]
    data["count"] = 1
    with pytest.raises(ValueError):
        Histogram.from_dict(data)


@pytest.mark.parametrize(("p", "n", "rank"), [(99.9, 1000, 999), (50, 10, 5), (50, 11, 6), (0, 5, 1), (100, 5, 5)])
def test_rank_uses_the_decimal_percentile(p, n, rank):
    assert rank_for_percentile(p, n) == rank
