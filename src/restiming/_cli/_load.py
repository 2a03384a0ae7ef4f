"""The load itself, as one worker runs it: a closed loop or an open arrival schedule.

Open loop, correct by construction: arrival ``k`` has an intended start on a fixed
schedule (``arrivals``: a constant rate, or k6's ramping-arrival-rate stages with the
rate linear between targets); worker ``i`` of ``W`` takes the arrivals ``k ≡ i (mod
W)``. A request starts only once the C clock (not the loop's coarser clock, which
uvloop lets wake up to ~1 ms early) has reached its intended start, so lateness is
never negative and latency from the intended start (``corrected``) is never below
the entry's duration. When ``max_in_flight`` requests are already in flight, the
arrival is *dropped* (counted, not sent) instead of queued silently.

Closed loop: ``concurrency`` loops, each starting its next request when the previous
one ends. Warm-up requests (before ``warmup_end``) are marked with the initiator type
``"warmup"``, so the parent excludes them from every statistic by reading the record.
"""

from __future__ import annotations

import asyncio
import math

import restiming
from restiming import clock

__all__ = ["arrivals", "generate", "DEFAULT_MAX_IN_FLIGHT", "STOP_GRACE"]

#: Seconds in-flight requests get to finish after a stop (Ctrl-C) before they are cancelled.
STOP_GRACE = 2.0
#: Open loop: requests in flight at most, over all workers, before arrivals are dropped.
DEFAULT_MAX_IN_FLIGHT = 1000
#: Arrivals dispatched back to back (when behind schedule) before yielding to the loop.
_BURST = 64


def arrivals(stages: list[tuple[float, float]], start_rate: float = 0.0):
    """Offsets in ns of every arrival of a schedule: ``stages`` is a list of
    ``(seconds, target rate)``, the rate going linearly from the previous target
    (``start_rate`` first) to this one; arrival ``k`` is where the cumulative count
    ``N(t)`` reaches ``k`` (so the first is at 0). A stage may last ``math.inf``."""
    t0, n0, r0, k = 0.0, 0.0, float(start_rate), 0
    for seconds, r1 in stages:
        r1 = float(r1)
        a = 0.0 if math.isinf(seconds) else (r1 - r0) / (2 * seconds)  # N(t) = n0 + r0 t + a t^2
        n_end = math.inf if math.isinf(seconds) else n0 + (r0 + r1) / 2 * seconds
        while k < n_end - 1e-9:
            x = k - n0
            disc = r0 * r0 + 4 * a * x
            denom = r0 + math.sqrt(max(disc, 0.0))
            t = 2 * x / denom if denom > 0 else 0.0  # the stable root of a t^2 + r0 t - x = 0
            yield int((t0 + min(t, seconds)) * 1e9)
            k += 1
        t0 += seconds
        n0, r0 = n_end, r1


async def _sleep_until(t_ns: int) -> None:
    while True:
        d = t_ns - clock.now_ns()
        if d <= 0:
            return
        await asyncio.sleep(d / 1e9)  # may wake early: check the C clock again


async def generate(perf, share: dict, start_ns: int, stopped, counts: dict | None = None) -> dict:
    """Run one worker's share of the load (``share``: see ``BenchConfig.share``);
    returns its counts. ``stopped()`` says when to stop early. ``counts``, when given,
    is updated in place as the run goes (a Ray actor ships it with every batch)."""
    loop = asyncio.get_running_loop()
    conc = share["concurrency"]
    limits = restiming.Limits(max_connections=conc, max_connections_per_origin=conc)
    urls, method, headers, body = share["urls"], share["method"], share["headers"], share["body"]
    warmup_end = start_ns + int(share["warmup"] * 1e9)
    if counts is None:
        counts = {}
    counts.update({"index": share["index"], "sent": 0, "warmup_sent": 0, "dropped": 0, "concurrency": conc})

    async with restiming.Client(perf, limits=limits, **share["client"]) as client:
        await _sleep_until(start_ns)

        async def one(url, intended=None, initiator="fetch"):
            try:
                await client.fetch(url, method=method, headers=headers, body=body, intended_start=intended,
                                   initiator_type=initiator)
            except restiming.FetchError:
                pass  # the entry carries the error

        if share["schedule"] is None:
            tasks = await _closed(loop, share, one, urls, warmup_end, counts, stopped)
        else:
            tasks = await _open(loop, share, one, urls, start_ns, warmup_end, counts, stopped)
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.05)
            if stopped() and pending:
                _, pending = await asyncio.wait(pending, timeout=STOP_GRACE)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
                break
    return counts


async def _closed(loop, share, one, urls, warmup_end, counts, stopped) -> list:
    n = share["requests"]
    end_ns = None if share["duration"] is None else warmup_end + int(share["duration"] * 1e9)
    now = clock.now_ns

    async def looper():
        while not stopped():
            t = now()
            if t < warmup_end:
                counts["warmup_sent"] += 1
                await one(urls[counts["warmup_sent"] % len(urls)], initiator="warmup")
                continue
            if (n is not None and counts["sent"] >= n) or (end_ns is not None and t >= end_ns):
                return
            url = urls[counts["sent"] % len(urls)]
            counts["sent"] += 1
            await one(url)

    return [loop.create_task(looper()) for _ in range(share["concurrency"])]


async def _open(loop, share, one, urls, start_ns, warmup_end, counts, stopped) -> set:
    index, workers = share["index"], share["workers"]
    bound = share["max_in_flight"]
    n = share["requests"]  # total over all workers, main phase
    tasks: set = set()
    warm = share["warmup"] > 0
    warm_sched = arrivals([(share["warmup"], share["warmup_rate"])], share["warmup_rate"]) if warm else iter(())
    main_sched = arrivals(share["schedule"], share["start_rate"])
    burst = 0
    for phase, sched, base in (("warmup", warm_sched, start_ns), ("fetch", main_sched, warmup_end)):
        k = -1
        for offset in sched:
            k += 1
            if phase == "fetch" and n is not None and k >= n:
                break
            if k % workers != index:
                continue
            if stopped():
                return tasks
            intended = base + offset
            if clock.now_ns() < intended:
                await _sleep_until(intended)
                burst = 0
            elif burst >= _BURST:  # behind schedule: still let responses in
                await asyncio.sleep(0)
                burst = 0
            burst += 1
            if len(tasks) >= bound:
                if phase == "fetch":
                    counts["dropped"] += 1
                continue
            counts["sent" if phase == "fetch" else "warmup_sent"] += 1
            task = loop.create_task(one(urls[k % len(urls)], intended, phase))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    return tasks
