"""Aggregation of drained entries for the load generator: per-phase histograms
(integer nanoseconds, bounded memory), error counts, lateness of an open-loop
schedule, a bounded latency-over-time series and a reservoir of sampled entries.

Everything here is fixed-size whatever the run length: the time series keeps at most
``MAX_SLOTS`` slots and doubles the slot width when a run outgrows them.
"""

from __future__ import annotations

import collections
import random

from restiming.phases import phase_durations

from ._hist import Histogram

__all__ = ["Aggregator", "HIST_PHASES", "MAX_SLOTS"]

HIST_PHASES = ("queue", "dns", "connect", "tls", "request", "wait", "receive", "total")
MAX_SLOTS = 600
SAMPLES = 50
#: Requests starting more than this after their intended time count as late.
LATE_THRESHOLD_MS = 1.0


class _Coarse:
    """A tiny log histogram (8 buckets per doubling, ~9% precision) for one time slot."""

    __slots__ = ("counts", "n", "errors", "max")
    _SCALE = 8

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.errors = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        key = int(self._SCALE * _log2(max(ms, 1e-6)))
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1
        if ms > self.max:
            self.max = ms

    def merge(self, other: "_Coarse") -> None:
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        self.n += other.n
        self.errors += other.errors
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        total = sum(self.counts.values())
        if not total:
            return 0.0
        rank = max(1, -(-p * total // 100))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank:
                return min(2 ** ((k + 1) / self._SCALE), self.max)
        return self.max


def _log2(x: float) -> float:
    import math

    return math.log2(x)


class Aggregator:
    def __init__(self, *, open_loop: bool) -> None:
        self.open_loop = open_loop
        phases = HIST_PHASES + (("corrected",) if open_loop else ())
        self.hists = {name: Histogram() for name in phases}
        self.completed = 0
        self.errors: collections.Counter = collections.Counter()
        self.late_count = 0
        self.late_sum = 0.0
        self.late_max = 0.0
        self.first_start: float | None = None
        self.last_end = 0.0
        self.slot_width = 1.0  # seconds
        self.slots: list[_Coarse] = []
        self.samples: list[dict] = []
        self._seen = 0
        self._rng = random.Random(1)
        self.t0_ms: float | None = None

    @property
    def total(self) -> int:
        return self.completed + sum(self.errors.values())

    def add(self, entry, data: dict) -> None:
        """Account one drained entry (``data`` is its ``to_dict()``)."""
        if self.t0_ms is None:
            self.t0_ms = entry.start_time
        if entry.error:
            self.errors[entry.error] += 1
        else:
            self.completed += 1
            for name, value in phase_durations(data).items():
                hist = self.hists.get(name)
                if hist is not None and value is not None:
                    hist.record(int(value * 1e6))
        if entry.intended_start:
            late = entry.start_time - entry.intended_start
            if late > LATE_THRESHOLD_MS:
                self.late_count += 1
                self.late_sum += late
                self.late_max = max(self.late_max, late)
        start = entry.start_time
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_end = max(self.last_end, entry.response_end)
        self._slot(entry, data)
        self._sample(data)

    def _slot(self, entry, data: dict) -> None:
        t = max(0.0, (entry.start_time - self.t0_ms) / 1000.0)
        index = int(t / self.slot_width)
        while index >= MAX_SLOTS:  # keep memory fixed: halve the resolution
            merged = []
            for i in range(0, len(self.slots), 2):
                slot = self.slots[i]
                if i + 1 < len(self.slots):
                    slot.merge(self.slots[i + 1])
                merged.append(slot)
            self.slots = merged
            self.slot_width *= 2
            index = int(t / self.slot_width)
        while len(self.slots) <= index:
            self.slots.append(_Coarse())
        slot = self.slots[index]
        if entry.error:
            slot.errors += 1
            slot.n += 1
        else:
            latency = entry.duration
            if self.open_loop and entry.intended_start:
                latency = entry.response_end - entry.intended_start
            slot.add(latency)

    def _sample(self, data: dict) -> None:
        self._seen += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(data)
        else:
            j = self._rng.randrange(self._seen)
            if j < SAMPLES:
                self.samples[j] = data

    def timeline(self) -> list[dict]:
        out = []
        for i, slot in enumerate(self.slots):
            out.append({"t": i * self.slot_width, "width": self.slot_width, "count": slot.n,
                        "errors": slot.errors, "p50_ms": slot.percentile(50), "p99_ms": slot.percentile(99),
                        "max_ms": slot.max})
        return out

    def phase_table(self) -> dict:
        return {name: (hist.summary_ms() if hist.count else {"count": 0}) for name, hist in self.hists.items()}
