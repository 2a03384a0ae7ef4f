"""The bench parent's aggregation before issue 7 (commit 8cb059b), kept verbatim as the
named baseline of ``bench_parent.py``: one entry object and one ``to_dict()`` per
drained record, phases from ``phase_durations`` (floats), one ``Histogram.record`` per
phase. Not used by restiming itself."""

from __future__ import annotations

import collections
import random

from restiming.phases import phase_durations

from restiming._cli._hist import Histogram

__all__ = ["Aggregator", "HIST_PHASES", "MAX_SLOTS"]

HIST_PHASES = ("queue", "dns", "connect", "tls", "request", "wait", "receive", "total")
MAX_SLOTS = 600
SAMPLES = 50
#: Requests starting more than this after their intended time count as late.
LATE_THRESHOLD_MS = 1.0


class _Slot:
    """One time slot of the latency-over-time series: a coarse histogram (one
    significant digit, about 4 KiB) of the latencies that started in it, plus errors."""

    __slots__ = ("hist", "errors")

    def __init__(self) -> None:
        self.hist = Histogram(digits=1)
        self.errors = 0

    def merge(self, other: "_Slot") -> None:
        self.hist.merge(other.hist)
        self.errors += other.errors

    def row(self, t: float, width: float) -> dict:
        h = self.hist
        empty = not h.count
        return {"t": t, "width": width, "count": h.count + self.errors, "errors": self.errors,
                "p50_ms": 0.0 if empty else h.percentile(50) / 1e6,
                "p99_ms": 0.0 if empty else h.percentile(99) / 1e6,
                "max_ms": 0.0 if empty else h.max / 1e6}


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
        self.slot_width = 1.0  # seconds
        self.slots: list[_Slot] = []
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
        latency = None
        if entry.error:
            self.errors[entry.error] += 1
        else:
            self.completed += 1
            durations = phase_durations(data)
            for name, value in durations.items():
                hist = self.hists.get(name)
                if hist is not None and value is not None:
                    hist.record(int(value * 1e6))
            # The time series shows what a user waited: from the intended start in
            # an open loop (no coordinated omission), else the entry's duration.
            latency = durations["corrected"] if self.open_loop and durations["corrected"] is not None \
                else durations["total"]
        if entry.intended_start:
            late = entry.start_time - entry.intended_start
            if late > LATE_THRESHOLD_MS:
                self.late_count += 1
                self.late_sum += late
                self.late_max = max(self.late_max, late)
        self._slot(entry.start_time, latency)
        self._sample(data)

    def _slot(self, start_ms: float, latency_ms: float | None) -> None:
        """Count one request in the slot it started in (``None``: an error)."""
        t = max(0.0, (start_ms - self.t0_ms) / 1000.0)
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
            self.slots.append(_Slot())
        slot = self.slots[index]
        if latency_ms is None:
            slot.errors += 1
        else:
            slot.hist.record(int(max(latency_ms, 0.0) * 1e6))

    def _sample(self, data: dict) -> None:
        self._seen += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(data)
        else:
            j = self._rng.randrange(self._seen)
            if j < SAMPLES:
                self.samples[j] = data

    def timeline(self) -> list[dict]:
        return [slot.row(i * self.slot_width, self.slot_width) for i, slot in enumerate(self.slots)]

    def phase_table(self) -> dict:
        return {name: (hist.summary_ms() if hist.count else {"count": 0}) for name, hist in self.hists.items()}
