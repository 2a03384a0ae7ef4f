"""Where the bench's load runs: the runner interface and the local runners.

A runner takes the parent's shared ``Performance`` and one share of the load per
worker (``BenchConfig.share``), starts them together at one monotonic start time,
calls ``tick()`` every ``DRAIN_INTERVAL`` while they run (the parent drains the
timeline there) and returns each worker's counts (``_load.generate``'s dict plus
``lost``: records a worker could not publish, and ``rss_mb``). ``stop()`` is polled:
once true, workers stop starting requests and in-flight ones get ``STOP_GRACE``.

``InProcessRunner`` runs the load on this process's loop (``--workers 0``);
``ProcessRunner`` in spawned processes, each with its own uvloop, attached to the
shared timeline (no pickling per request). A Ray runner (one actor per worker, records
moving as batches) implements the same ``run``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_mod
import resource
import signal
import time
from typing import Callable, Protocol

import restiming
from restiming import clock

from ._common import run_loop
from ._load import STOP_GRACE, generate

__all__ = ["Runner", "InProcessRunner", "ProcessRunner", "DRAIN_INTERVAL", "START_AHEAD_NS"]

DRAIN_INTERVAL = 0.02
#: Workers start together this far after all are ready, so the first intended starts are not late.
START_AHEAD_NS = 20_000_000
#: Seconds workers get to start before the run is declared failed.
READY_TIMEOUT = 120.0


class Runner(Protocol):
    def run(self, perf, shares: list[dict], *, tick: Callable[[], None], stop: Callable[[], bool],
            on_start: Callable[[int], None]) -> list[dict]: ...


def _peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class InProcessRunner:
    def run(self, perf, shares, *, tick, stop, on_start):
        (share,) = shares

        async def main() -> dict:
            start_ns = clock.now_ns() + START_AHEAD_NS
            on_start(start_ns)
            task = asyncio.ensure_future(generate(perf, share, start_ns, stop))
            while not task.done():
                await asyncio.wait([task], timeout=DRAIN_INTERVAL * 5)
                tick()
            return task.result()

        counts = run_loop(main())
        counts.update(lost=0, rss_mb=_peak_rss_mb())
        return [counts]


def _worker_main(share_name: str, share: dict, stop, results, start_value) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    perf = restiming.Performance.attach(share_name)
    counts = {"index": share["index"], "sent": 0, "warmup_sent": 0, "dropped": 0,
              "concurrency": share["concurrency"]}
    try:
        results.put(("ready", share["index"]))
        deadline = time.monotonic() + READY_TIMEOUT
        while not start_value.value and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.002)
        if start_value.value:
            counts = run_loop(generate(perf, share, start_value.value, stop.is_set))
    finally:
        perf.close()
        counts.update(lost=perf.dropped_entries, rss_mb=_peak_rss_mb())
        results.put(("done", share["index"], counts))


class ProcessRunner:
    def run(self, perf, shares, *, tick, stop, on_start):
        ctx = multiprocessing.get_context("spawn")
        stop_event = ctx.Event()
        results = ctx.Queue()
        start_value = ctx.Value("q", 0)
        procs = [ctx.Process(target=_worker_main, daemon=True, name=f"restiming-worker-{s['index']}",
                             args=(perf.share_name, s, stop_event, results, start_value)) for s in shares]
        for p in procs:
            p.start()
        ready: set = set()
        done: dict = {}

        def receive(timeout: float) -> None:
            try:
                msg = results.get(timeout=timeout)
            except queue_mod.Empty:
                return
            if msg[0] == "ready":
                ready.add(msg[1])
            else:
                done[msg[1]] = msg[2]

        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while len(ready) + len(done) < len(procs) and not stop():
                receive(0.1)
                if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                    raise RuntimeError("bench workers failed to start")
            start_ns = clock.now_ns() + START_AHEAD_NS
            on_start(start_ns)
            start_value.value = start_ns
            stop_deadline = None
            while len(done) < len(procs):
                if stop() and stop_deadline is None:
                    stop_event.set()
                    stop_deadline = time.monotonic() + STOP_GRACE + 10
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    break
                receive(DRAIN_INTERVAL)
                tick()
                if not any(p.is_alive() for p in procs):
                    receive(0.5)
                    if len(done) < len(procs):
                        break  # a worker died without reporting
        finally:
            stop_event.set()
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
            results.close()
            results.join_thread()
        return [done[i] for i in sorted(done)]
