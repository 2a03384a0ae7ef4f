"""CPU the ``restiming bench`` parent spends per entry: draining the timeline and
aggregating (histograms per phase and group, statuses, errors, time series, samples).

Named baseline, same run: the entry-building path the parent used before issue 7
(``perf.drain()`` -> one entry and one ``to_dict()`` per record -> ``phase_durations``
-> one ``Histogram.record`` per phase; ``_legacy_aggregator.py``). restiming:
``perf._drain_raw()`` -> ``Aggregator.add_span`` on the packed records.

Each repetition records the same realistic mix with the low-level API (85 % reused
keep-alive 200s, 10 % new connections, 4 % 503s, 1 % connect errors; two URLs; an
intended start on every entry, as an open loop sets), then times one drain and
aggregation of all of it with ``time.process_time`` (CPU, not wall). The two paths
alternate, and the median per-entry figure is reported with the ratio.

    python benchmarks/bench_parent.py [--entries 50000] [--reps 5]

Target (issue 7): at most 5 µs of parent CPU per entry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import restiming  # noqa: E402
from restiming._cli._stats import Aggregator  # noqa: E402

from _legacy_aggregator import Aggregator as LegacyAggregator  # noqa: E402

URLS = ("http://127.0.0.1:8080/api/items?page=1", "http://127.0.0.1:8080/static/app.js")
NEW_PHASES = ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end", "request_start",
              "request_end", "final_response_headers_start")
REUSED_PHASES = ("request_start", "request_end", "final_response_headers_start")


def fill(perf, n: int) -> None:
    for i in range(n):
        url = URLS[i % 2]
        intended = restiming.clock.now_ns()
        rec = perf.begin(url)
        kind = i % 100
        if kind == 99:
            rec.finish(error="connect", error_message="refused", intended_start=intended)
            continue
        reused = kind >= 10
        for phase in REUSED_PHASES if reused else NEW_PHASES:
            rec.stamp(phase)
        rec.finish(response_status=503 if kind in (95, 96, 97, 98) else 200, encoded_body_size=120,
                   decoded_body_size=120, content_type="application/json", next_hop_protocol="http/1.1",
                   connection_id=1 + i % 64, connection_reused=reused, remote_address="127.0.0.1:8080",
                   bytes_sent=90, bytes_received=260, intended_start=intended)


def legacy(perf) -> int:
    agg = LegacyAggregator(open_loop=True)
    n = 0
    for entry in perf.drain():
        agg.add(entry, entry.to_dict())
        n += 1
    return n


def raw(perf) -> int:
    agg = Aggregator(open_loop=True, group_by="url")
    agg.start(perf._origin_ns)
    n = 0
    for buf, start, end in perf._drain_raw():
        n += agg.add_span(buf, start, end)
    return n


def measure(fn, entries: int) -> float:
    perf = restiming.Performance(buffer_size=1 << 40)
    try:
        fill(perf, entries)
        t = time.process_time()
        n = fn(perf)
        cpu = time.process_time() - t
    finally:
        perf.close()
    assert n == entries, (n, entries)
    return cpu / entries * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    results: dict[str, list[float]] = {"legacy (entry per record)": [], "restiming (packed records)": []}
    for _ in range(args.reps):
        results["legacy (entry per record)"].append(measure(legacy, args.entries))
        results["restiming (packed records)"].append(measure(raw, args.entries))
    base = statistics.median(results["legacy (entry per record)"])
    print(f"bench parent CPU per entry, {args.entries:,} entries x {args.reps} reps (median, process_time)")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"  {name:<28} {med:6.2f} µs/entry   (min {min(values):.2f}, max {max(values):.2f})"
              f"   {base / med:5.2f}x baseline")


if __name__ == "__main__":
    main()
