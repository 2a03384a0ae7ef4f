"""``restiming bench`` through 2 Ray engine actors vs 2 local worker processes, in one
run against one local nginx; and the Ray path's cost per record.

Run as a script (needs ``restiming[ray]`` and nginx):

    python benchmarks/bench_ray.py            # 3 interleaved rounds of each, 20k requests

Baseline: ``--workers 2`` (local processes on one shared-memory ring, the parent
aggregating packed records). Both use the same load code, closed loop, same
connections. Per request: the wall-time difference at saturation (1/rps). Per record:
CPU (``time.process_time``) of the Ray path's steps on the same packed records — the
actor's poll (drain + histogram delta + Arrow batch), the driver's merge of the delta,
pickling the poll reply as Ray ships it, the Parquet write — next to the local
parent's drain + aggregation of the same records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import restiming  # noqa: E402
from restiming._cli._stats import Aggregator  # noqa: E402
from tests.peers.nginx import NginxServer  # noqa: E402

CONNECTIONS = 32
REQUESTS = 20_000
ROUNDS = 3
RECORDS = 5_000


def _bench(url: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "s.json")
        proc = subprocess.run([sys.executable, "-m", "restiming", "bench", url, "-n", str(REQUESTS),
                               "-c", str(CONNECTIONS), "--workers", "2", "--no-progress", "--summary", summary,
                               *extra], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout + proc.stderr)
        with open(summary) as f:
            return json.load(f)


def throughput(url: str, address: str) -> list[str]:
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(ROUNDS):  # interleaved, so drift hits both alike
        for name, extra in (("local", []), ("ray", ["--ray", address])):
            s = _bench(url, extra)
            assert s["sent"] == s["completed"] == REQUESTS and s["missing"] == 0, s
            runs[name].append(s["throughput_rps"])
    lines = [f"closed loop, {REQUESTS} requests, -c {CONNECTIONS}, 2 workers, {ROUNDS} interleaved rounds"]
    for name in ("local", "ray"):
        r = runs[name]
        lines.append(f"  {name:<6} {statistics.median(r):8.0f} req/s  (min {min(r):.0f}, max {max(r):.0f})")
    loc, ray_ = statistics.median(runs["local"]), statistics.median(runs["ray"])
    lines.append(f"  ray/local throughput {ray_ / loc:.3f}; overhead per request "
                 f"{(1 / ray_ - 1 / loc) * 1e6:+.1f} µs of wall time (2 workers: "
                 f"{2 * (1 / ray_ - 1 / loc) * 1e6:+.1f} µs per request per worker)")
    return lines


def _records(url: str, n: int):
    perf = restiming.Performance(buffer_size=1 << 30)

    async def go():
        async with restiming.Client(perf, limits=restiming.Limits(max_connections=16)) as c:
            sem = asyncio.Semaphore(16)

            async def one():
                async with sem:
                    await c.fetch(url, intended_start=restiming.clock.now_ns())
            await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(go())
    spans = [(bytes(buf[s:e]), 0, e - s) for buf, s, e in perf._drain_raw()]
    return perf, spans


def per_record(url: str) -> list[str]:
    from restiming.distributed._actor import EngineActor
    from restiming.distributed._arrow import ParquetSink, records_to_batch

    stats = {"open_loop": True, "group_by": None, "method": "GET", "expect_status": "200-399", "warmup": False,
             "slot_width": 0.1, "hlog": False}
    perf, spans = _records(url, RECORDS)
    t0 = min(int.from_bytes(b[8:16], "little") for b, _, _ in spans)
    out = {"local parent: aggregate": [], "actor: aggregate + delta + Arrow batch": [],
           "actor: Arrow batch alone": [], "reply pickled + unpickled": [], "driver: merge delta": [],
           "driver: Parquet write": []}
    for _ in range(5):
        agg = Aggregator(open_loop=True, slot_width=0.1)
        agg.start(t0)
        c = time.process_time()
        for span in spans:
            agg.add_span(*span)
        out["local parent: aggregate"].append(time.process_time() - c)

        actor = EngineActor(0, stats)
        actor.t0_ns = t0
        actor.perf.close()
        actor.perf = type("P", (), {"_drain_raw": staticmethod(lambda: spans), "dropped_entries": 0})()
        c = time.process_time()
        reply = actor.poll()
        out["actor: aggregate + delta + Arrow batch"].append(time.process_time() - c)
        c = time.process_time()
        records_to_batch(spans, actor.where)
        out["actor: Arrow batch alone"].append(time.process_time() - c)
        c = time.process_time()
        pickle.loads(pickle.dumps(reply, protocol=5))
        out["reply pickled + unpickled"].append(time.process_time() - c)
        driver = Aggregator(open_loop=True, slot_width=0.1)
        c = time.process_time()
        driver.merge_delta(reply["delta"], 0)
        out["driver: merge delta"].append(time.process_time() - c)
        with tempfile.TemporaryDirectory() as tmp:
            sink = ParquetSink(tmp)
            c = time.process_time()
            sink.write(0, reply["batch"])
            sink.close()
            out["driver: Parquet write"].append(time.process_time() - c)
    n = reply["records"]
    lines = [f"CPU per record, {n} records in one poll, median of 5 (min-max)"]
    for name, v in out.items():
        lines.append(f"  {name:<42} {statistics.median(v) / n * 1e6:6.2f} µs  "
                     f"({min(v) / n * 1e6:.2f}-{max(v) / n * 1e6:.2f})")
    base = statistics.median(out["local parent: aggregate"])
    extra = (statistics.median(out["actor: aggregate + delta + Arrow batch"]) - base
             + statistics.median(out["reply pickled + unpickled"]) + statistics.median(out["driver: merge delta"]))
    lines.append(f"  Ray path over the local parent (poll + ship + merge, no Parquet): {extra / n * 1e6:+.2f} µs/record")
    return lines


def main() -> None:
    import ray

    ray.init(num_cpus=1, resources={"restiming_engine": 2}, include_dashboard=False,
             object_store_memory=256 * 1024 * 1024, logging_level=logging.WARNING)
    try:
        address = ray.get_runtime_context().gcs_address
        with NginxServer() as nginx:
            url = nginx.url("/small.txt")
            lines = throughput(url, address) + [""] + per_record(url)
    finally:
        ray.shutdown()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
