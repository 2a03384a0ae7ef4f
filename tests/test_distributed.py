"""``restiming.distributed`` without a Ray cluster: imports stay lazy, the actor body
runs in-process, Arrow batches decode like entries, histogram deltas merge to what one
aggregator would have counted. The real-cluster runs are in test_ray.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

import restiming
from restiming._cli._bench import BenchConfig
from restiming._cli._hist import Histogram
from restiming._cli._stats import HIST_PHASES, Aggregator, IntervalCollector
from restiming._entry import decode_record
from restiming._ring import iter_records

pyarrow = pytest.importorskip("pyarrow") if os.environ.get("CI") != "true" else __import__("pyarrow")

from restiming.distributed._actor import EngineActor  # noqa: E402  (needs pyarrow)
from restiming.distributed._arrow import SCHEMA, batch_to_dicts, records_to_batch  # noqa: E402

pytestmark = pytest.mark.nginx


def test_importing_restiming_imports_neither_ray_nor_pyarrow():
    code = ("import sys, restiming, restiming.distributed, restiming._cli._bench; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'pyarrow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _records(nginx, n=40, warmup=3, errors=2):
    perf = restiming.Performance(buffer_size=1 << 20)

    async def go():
        async with restiming.Client(perf) as c:
            for _ in range(warmup):
                await c.fetch(nginx.url("/small.txt"), initiator_type="warmup")
            for i in range(n):
                await c.fetch(nginx.url("/small.txt" if i % 3 else "/st"), intended_start=restiming.clock.now_ns())
            for _ in range(errors):
                with pytest.raises(restiming.FetchError):
                    await c.fetch(f"http://127.0.0.1:{_closed_port()}/x")

    asyncio.run(go())
    return perf, perf._drain_raw()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _where(perf):
    return {"host": "h1", "pid": 7, "actor": 3, "origin_realtime_ns": perf._time.realtime_ns,
            "origin_monotonic_ns": perf._origin_ns}


def test_batch_has_one_column_per_entry_field_and_decodes_like_entries(nginx):
    perf, spans = _records(nginx)
    batch, read = records_to_batch(spans, _where(perf))
    assert read == 45 and batch.num_rows == 42  # warm-up left out
    assert batch.schema.equals(SCHEMA, check_metadata=False)
    assert batch.schema.metadata[b"restiming.host"] == b"h1"
    assert str(batch.schema.field("name").type).startswith("dictionary")
    assert batch.column("start_time").type == pyarrow.int64()
    assert set(batch.column("pid").to_pylist()) == {7}
    expected = [decode_record(buf, off, perf._origin_ns).to_dict() for buf, s, e in spans
                for off, _ in iter_records(buf, s, e)]
    expected = [d for d in expected if d["initiator_type"] != "warmup"]
    got = batch_to_dicts(batch, perf._time.realtime_ns)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        for key, value in b.items():
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, abs=1e-6), key
            else:
                assert a[key] == value, key
    # Integer ns: a duration is the difference of two stamps of one host, exactly.
    rows = batch.to_pylist()
    assert all(r["duration"] == r["response_end"] - r["start_time"] for r in rows if r["response_end"])
    assert sum(1 for r in rows if r["error"]) == 2


def _agg(**kw):
    return Aggregator(open_loop=True, group_by="url", warmup=True, slot_width=0.001, **kw)


def test_deltas_merge_to_what_one_aggregator_counts(nginx):
    perf, spans = _records(nginx, n=60)
    t0 = min(int.from_bytes(b[s + 8:s + 16], "little") for b, s, e in spans)
    whole = _agg()
    whole.start(t0)
    for span in spans:
        whole.add_span(*span)
    merged = _agg(hlog=IntervalCollector())
    merged.start(0)
    records = [(buf, off - 8, off + ((n + 7) & ~7)) for buf, s, e in spans for off, n in iter_records(buf, s, e)]
    for part in (records[:10], records[10:11], records[11:]):  # three shipping periods
        delta = _agg(hlog=IntervalCollector())
        delta.start(t0)
        for span in part:
            delta.add_span(*span)
        merged.merge_delta(delta.to_delta())
    assert merged.warmup_entries == whole.warmup_entries == 3
    assert merged.errors == whole.errors and merged.total == whole.total == 62
    for name in HIST_PHASES:
        i = HIST_PHASES.index(name)
        a, b = Histogram(), Histogram()
        for g in whole.all_groups():
            a.merge(g.hists[i])
        for g in merged.all_groups():
            b.merge(g.hists[i])
        assert a == b, name
    assert {g.name for g in merged.all_groups()} == {g.name for g in whole.all_groups()}
    assert merged.late_hist == whole.late_hist
    assert merged.connections == whole.connections
    assert [r["count"] for r in merged.timeline()] == [r["count"] for r in whole.timeline()]
    assert sum(len(v) for v in merged.samples.values()) == sum(len(v) for v in whole.samples.values())


def test_delta_slots_at_another_width_are_rebinned():
    driver = Aggregator(open_loop=False, slot_width=0.002)
    actor = Aggregator(open_loop=False, slot_width=0.001)
    delta = actor.to_delta()
    delta["slots"] = [(5, None, 2), (7, None, 1)]
    driver.merge_delta(delta)
    assert [r["errors"] for r in driver.timeline()] == [0, 0, 2, 1]
    coarse = dict(delta, slot_width=0.008, slots=[(1, None, 4)])
    driver.merge_delta(coarse)  # the driver halves to the coarser width
    assert driver.slot_width == pytest.approx(0.008)
    assert [r["errors"] for r in driver.timeline()] == [3, 4]


def test_engine_actor_in_process_ships_every_record(nginx):
    cfg = BenchConfig([nginx.url("/small.txt")], rate=300, duration=0.6, concurrency=4, workers=2, warmup=0.1)
    share = cfg.shares()[1]
    stats = {"open_loop": True, "group_by": None, "method": "GET", "expect_status": "200-399", "warmup": True,
             "slot_width": 0.01, "hlog": True}
    actor = EngineActor(1, stats)
    info = actor.info()
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert actor.start(share, time.time_ns() + 50_000_000)["late_ns"] == 0
    driver = Aggregator(open_loop=True, warmup=True, slot_width=0.01)
    rows = records = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.1)
        res = actor.poll()
        driver.merge_delta(res["delta"])
        rows += res["batch"].num_rows if res["batch"] is not None else 0
        records += res["records"]
        if res["done"]:
            break
    assert res["done"] and res["error"] is None and res["ended_at_ns"] > 0
    counts = res["counts"]
    assert counts["sent"] == 90 == rows + counts["dropped"] * 0 and counts["lost"] == 0
    assert records == counts["sent"] + counts["warmup_sent"] and driver.warmup_entries == counts["warmup_sent"]
    assert driver.total == rows
    assert actor.poll()["records"] == 0  # nothing left behind
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()  # the actor body never starts Ray by itself
