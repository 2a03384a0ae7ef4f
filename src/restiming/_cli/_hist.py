"""A latency histogram in the HdrHistogram layout: integer nanoseconds, fixed memory,
3 significant digits, merged by adding counts (never by averaging percentiles).

Strategy (HdrHistogram's log-linear bucketing, http://hdrhistogram.org/): values are
kept like floats. ``sub_bucket_count`` is the smallest power of two >= 2 * 10**digits
(2048 for 3 digits) so that within every bucket, adjacent values differ by less than
one part in 10**digits. Bucket 0 counts 0 .. sub_bucket_count - 1 in units of the
lowest discernible value (rounded down to a power of two, the "unit"); each further
bucket doubles the unit and keeps only its top half of sub-buckets, since its lower
half is already covered by the buckets before it. One flat ``array('q')`` holds
``(bucket_count + 1) * sub_bucket_count / 2`` counters, sized once from the highest
trackable value: memory does not depend on how many values are recorded.

A value is reported as the highest value equivalent to its counter (so a percentile
is never below the exact one, and above it by less than 1/1024 of it or one unit);
percentiles are clamped into [min, max], which are tracked exactly (the first and last
rank are answered with them), as are the sum (for the mean) and the number of values
clamped to the highest trackable value.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from decimal import Decimal
from typing import Any, Iterable

__all__ = ["Histogram", "rank_for_percentile"]

_NS_PER_MS = 1_000_000
#: The percentiles a summary reports, and their key names.
SUMMARY_PERCENTILES = ((50.0, "p50_ms"), (90.0, "p90_ms"), (99.0, "p99_ms"), (99.9, "p999_ms"))


def rank_for_percentile(p: float, total: int) -> int:
    """1-based rank of the value at percentile ``p`` among ``total`` values:
    ``ceil(p / 100 * total)``, at least 1. Computed in decimal from the shortest
    repr of ``p`` so that 99.9 % of 1000 is rank 999, not 1000 (binary 0.999 is
    slightly above 0.999)."""
    if not 0.0 <= p <= 100.0 or math.isnan(p):
        raise ValueError(f"percentile must be in [0, 100], got {p!r}")
    rank = math.ceil(Decimal(repr(float(p))) * total / 100)
    return min(max(rank, 1), total)


class Histogram:
    """Counts of integer nanosecond values between 0 and ``highest`` (inclusive)."""

    __slots__ = (
        "lowest", "highest", "digits", "_unit_mag", "_half_mag", "_half", "_sub_mask",
        "_counts", "count", "clamped", "_sum", "_min", "_max",
    )

    def __init__(self, lowest: int = 1_000, highest: int = 3_600_000_000_000, digits: int = 3) -> None:
        if isinstance(lowest, bool) or not isinstance(lowest, int) or lowest < 1:
            raise ValueError(f"lowest must be an int >= 1, got {lowest!r}")
        if not isinstance(highest, int) or highest < 2 * lowest:
            raise ValueError(f"highest must be an int >= 2 * lowest, got {highest!r}")
        if not isinstance(digits, int) or not 0 <= digits <= 5:
            raise ValueError(f"digits must be between 0 and 5, got {digits!r}")
        self.lowest, self.highest, self.digits = lowest, highest, digits
        # Values below 2 * 10**digits units are resolved to one unit: that is what
        # keeps the relative error under 10**-digits in every bucket.
        single_unit_max = 2 * 10**digits
        sub_mag = max((single_unit_max - 1).bit_length(), 1)
        self._unit_mag = lowest.bit_length() - 1  # floor(log2(lowest))
        self._half_mag = sub_mag - 1
        self._half = 1 << self._half_mag
        self._sub_mask = ((1 << sub_mag) - 1) << self._unit_mag
        # Enough buckets that the top one holds ``highest``.
        buckets, untrackable = 1, 1 << (sub_mag + self._unit_mag)
        while untrackable <= highest:
            untrackable <<= 1
            buckets += 1
        self._counts = array("q", bytes(8 * (buckets + 1) * self._half))
        self.count = 0
        self.clamped = 0
        self._sum = 0
        self._min = 0
        self._max = 0

    # -- layout ---------------------------------------------------------------------

    def _index(self, value: int) -> int:
        # bucket = how many doublings above bucket 0; OR-ing the mask puts every
        # small value in bucket 0.
        bucket = (value | self._sub_mask).bit_length() - self._unit_mag - self._half_mag - 1
        sub = value >> (bucket + self._unit_mag)
        return ((bucket + 1) << self._half_mag) + sub - self._half

    def _range(self, index: int) -> tuple[int, int]:
        """Lowest and highest value counted at ``index``."""
        bucket = (index >> self._half_mag) - 1
        sub = (index & (self._half - 1)) + self._half
        if bucket < 0:  # bucket 0's lower half
            sub -= self._half
            bucket = 0
        shift = bucket + self._unit_mag
        low = sub << shift
        return low, low + (1 << shift) - 1

    def same_layout(self, other: "Histogram") -> bool:
        return (self.lowest, self.highest, self.digits) == (other.lowest, other.highest, other.digits)

    # -- recording ------------------------------------------------------------------

    def record(self, value_ns: int, count: int = 1) -> None:
        """Count ``value_ns`` (an int >= 0) ``count`` times; above ``highest`` it is
        counted as ``highest`` (and in ``clamped``); min and max stay exact."""
        if value_ns < 0:
            raise ValueError(f"values must be >= 0, got {value_ns!r}")
        if count <= 0:
            if count == 0:
                return
            raise ValueError(f"count must be >= 0, got {count!r}")
        value_ns = int(value_ns)
        if self.count == 0 or value_ns < self._min:
            self._min = value_ns
        if value_ns > self._max:
            self._max = value_ns
        self._sum += value_ns * count
        self.count += count
        if value_ns > self.highest:
            self.clamped += count
            value_ns = self.highest
        self._counts[self._index(value_ns)] += count

    def record_many(self, values: Iterable[int]) -> None:
        for v in values:
            self.record(v)

    def record_batch(self, values: list[int]) -> None:
        """Count every int in ``values`` once: the same result as ``record`` per value,
        at a fraction of the cost (min, max and sum by builtins, the counter index by
        one comprehension, the increments by ``Counter``)."""
        if not values:
            return
        lo, hi = min(values), max(values)
        if lo < 0:
            raise ValueError(f"values must be >= 0, got {lo!r}")
        if self.count == 0 or lo < self._min:
            self._min = lo
        if hi > self._max:
            self._max = hi
        self._sum += sum(values)
        self.count += len(values)
        top = self.highest
        if hi > top:
            self.clamped += sum(1 for v in values if v > top)
            values = [v if v <= top else top for v in values]
        mask, k, um, hm, half = self._sub_mask, self._unit_mag + self._half_mag + 1, self._unit_mag, \
            self._half_mag, self._half
        counts = self._counts
        for i, c in Counter([(((b := (v | mask).bit_length() - k) + 1) << hm) + (v >> (b + um)) - half
                             for v in values]).items():
            counts[i] += c

    def merge(self, other: "Histogram") -> None:
        """Add ``other``'s counts into this one (same layout required)."""
        if not self.same_layout(other):
            raise ValueError("cannot merge histograms with different layouts "
                             f"({self.lowest}, {self.highest}, {self.digits}) and "
                             f"({other.lowest}, {other.highest}, {other.digits})")
        if other.count == 0:
            return
        counts = self._counts
        for i, c in enumerate(other._counts):
            if c:
                counts[i] += c
        if self.count == 0 or other._min < self._min:
            self._min = other._min
        self._max = max(self._max, other._max)
        self._sum += other._sum
        self.count += other.count
        self.clamped += other.clamped

    def reset(self) -> None:
        self._counts = array("q", bytes(8 * len(self._counts)))
        self.count = self.clamped = self._sum = self._min = self._max = 0

    # -- reading --------------------------------------------------------------------

    @property
    def min(self) -> int:
        return self._min

    @property
    def max(self) -> int:
        return self._max

    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    @property
    def total(self) -> int:
        """Sum of every recorded value (exact, before clamping)."""
        return self._sum

    def percentile(self, p: float) -> int:
        """The value at percentile ``p`` in [0, 100]: the highest value equivalent to
        the counter where the cumulative count reaches ``ceil(p / 100 * count)``,
        clamped into [min, max]. 0 for an empty histogram."""
        if not self.count:
            rank_for_percentile(p, 1)  # still validate p
            return 0
        return self._values_at_ranks([rank_for_percentile(p, self.count)])[0]

    def percentiles(self, ps: Iterable[float]) -> list[int]:
        """Several percentiles in one pass over the counters."""
        ps = list(ps)
        if not self.count:
            return [0 for p in ps if rank_for_percentile(p, 1)]
        return self._values_at_ranks([rank_for_percentile(p, self.count) for p in ps])

    def _values_at_ranks(self, ranks: list[int]) -> list[int]:
        order = sorted(range(len(ranks)), key=ranks.__getitem__)
        out = [0] * len(ranks)
        k, seen = 0, 0
        # The first and last ranks are known exactly: no need to round them up.
        while k < len(order) and ranks[order[k]] == 1:
            out[order[k]] = self._min
            k += 1
        for j in range(len(order) - 1, k - 1, -1):
            if ranks[order[j]] != self.count:
                break
            out[order[j]] = self._max
            order.pop(j)
        for i, c in enumerate(self._counts):
            if k == len(order):
                break
            if not c:
                continue
            seen += c
            while k < len(order) and ranks[order[k]] <= seen:
                out[order[k]] = min(max(self._range(i)[1], self._min), self._max)
                k += 1
        return out

    def summary_ms(self) -> dict[str, Any]:
        """The summary shape the bench report uses: count, min/percentiles/max/mean
        in milliseconds (floats)."""
        values = self.percentiles(p for p, _ in SUMMARY_PERCENTILES)
        out: dict[str, Any] = {"count": self.count, "min_ms": self._min / _NS_PER_MS}
        for (_, key), v in zip(SUMMARY_PERCENTILES, values):
            out[key] = v / _NS_PER_MS
        out["max_ms"] = self._max / _NS_PER_MS
        out["mean_ms"] = self.mean / _NS_PER_MS
        return out

    def memory_bytes(self) -> int:
        """Bytes held by the counters (the only part that scales with the layout)."""
        return self._counts.buffer_info()[1] * self._counts.itemsize

    # -- exchange -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form: the layout, the exact stats and only the non-zero
        counters as ``[index, count]`` pairs."""
        return {
            "lowest": self.lowest,
            "highest": self.highest,
            "digits": self.digits,
            "count": self.count,
            "clamped": self.clamped,
            "sum": self._sum,
            "min": self._min,
            "max": self._max,
            "counts": [[i, c] for i, c in enumerate(self._counts) if c],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Histogram":
        h = cls(data["lowest"], data["highest"], data["digits"])
        n = len(h._counts)
        total = 0
        for i, c in data["counts"]:
            if not 0 <= i < n or c < 0:
                raise ValueError(f"bad counter [{i}, {c}] for this layout")
            h._counts[i] += c
            total += c
        if total != data["count"]:
            raise ValueError(f"counters add up to {total}, not count={data['count']}")
        h.count, h.clamped, h._sum = data["count"], data["clamped"], data["sum"]
        h._min, h._max = data["min"], data["max"]
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.same_layout(other) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"<Histogram count={self.count} min={self._min} max={self._max} "
                f"clamped={self.clamped} layout=({self.lowest}, {self.highest}, {self.digits})>")
