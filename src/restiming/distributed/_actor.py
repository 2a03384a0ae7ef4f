"""One engine on one cluster node: the body of a ``restiming[ray]`` actor.

A plain class (``ray.remote`` is applied by the runner, so this runs and is tested
without Ray). ``start`` runs the same load code as a local bench worker
(``_load.generate``) on its own uvloop in a thread of the actor, from the agreed
wall-clock instant converted to this host's monotonic clock. ``poll`` is the bulk
path: it drains the actor's own timeline, accounts the records in a fresh
``Aggregator`` (the period's histogram delta) and packs them into one Arrow batch;
the caller (the driver) owns what it returns, so a batch once shipped survives the
actor. Every duration is computed here, on the host that took its stamps.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback

import restiming
from restiming import clock
from restiming._cli._common import run_loop
from restiming._cli._load import generate
from restiming._cli._runner import _peak_rss_mb
from restiming._cli._stats import Aggregator, IntervalCollector
from restiming._cli._thresholds import parse_expect_status

from ._arrow import records_to_batch

__all__ = ["EngineActor"]

#: The poll thread (draining, building the batch) shares the GIL with the load's loop;
#: Python's default 5 ms switch interval would make the loop start requests that late.
SWITCH_INTERVAL = 0.0005


class EngineActor:
    """``stats``: the Aggregator options (open_loop, group_by, method, expect_status,
    warmup, slot_width, hlog) so deltas are made exactly as the driver accounts."""

    def __init__(self, index: int, stats: dict, *, switch_interval: float | None = None) -> None:
        if switch_interval is not None:  # only in a process of the actor's own (Ray's worker)
            sys.setswitchinterval(switch_interval)
        self.index = index
        self.perf = restiming.Performance(buffer_size=1 << 40)
        t = self.perf._time
        self.where = {"host": socket.gethostname(), "pid": os.getpid(), "actor": index,
                      "origin_realtime_ns": t.realtime_ns, "origin_monotonic_ns": t.monotonic_ns}
        self.stats = dict(stats)
        self.expected, _ = parse_expect_status(self.stats.pop("expect_status"))
        self.want_hlog = self.stats.pop("hlog")
        self.t0_ns = 0
        self.counts: dict = {"index": index, "sent": 0, "warmup_sent": 0, "dropped": 0, "concurrency": 0}
        self.error: str | None = None
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = False
        self.ended_at_ns = 0

    def info(self) -> dict:
        out = dict(self.where)
        ray = sys.modules.get("ray")  # never import (nor auto-start) Ray from here
        out["node_id"] = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else None
        return out

    def start(self, share: dict, start_wall_ns: int) -> dict:
        """Begin the load at ``start_wall_ns`` (Unix ns, every actor's one instant);
        returns how late this call arrived for it (0 when in time)."""
        real, mono = clock.pair_ns()
        start_ns = mono + (start_wall_ns - real)
        self.t0_ns = start_ns + int(share["warmup"] * 1e9)
        self.counts["concurrency"] = share["concurrency"]

        def body() -> None:
            try:
                run_loop(generate(self.perf, share, start_ns, self._stop.is_set, self.counts))
            except BaseException:  # shipped with the next poll: the driver reports it
                self.error = traceback.format_exc()
            self.ended_at_ns = time.time_ns()

        self._thread = threading.Thread(target=body, name=f"restiming-engine-{self.index}", daemon=True)
        self._thread.start()
        return {"late_ns": max(clock.now_ns() - start_ns, 0)}

    def poll(self) -> dict:
        """Everything recorded since the last poll: an Arrow batch, the histogram
        delta, the running counts; ``done`` once the load has ended and this was the
        last of its records."""
        with self._drain_lock:
            finished = self._thread is not None and not self._thread.is_alive()
            spans = self.perf._drain_raw()
            agg = Aggregator(expected=self.expected, hlog=IntervalCollector() if self.want_hlog else None,
                             **self.stats)
            agg.start(self.t0_ns)
            for buf, start, end in spans:
                agg.add_span(buf, start, end)
            batch, read = records_to_batch(spans, self.where)
            out = {"batch": batch, "delta": agg.to_delta(), "records": read, "counts": dict(self.counts),
                   "done": finished, "error": self.error, "ended_at_ns": self.ended_at_ns if finished else 0}
            if finished and not self._done:
                self._done = True
                out["counts"].update(lost=self.perf.dropped_entries, rss_mb=_peak_rss_mb())
            return out

    def stop(self) -> None:
        """Stop starting requests; in-flight ones get ``_load.STOP_GRACE``."""
        self._stop.set()
