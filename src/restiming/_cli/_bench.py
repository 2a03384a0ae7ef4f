"""``restiming bench``: a load generator on the engine.

Closed loop (``-c`` concurrent request loops, ``-n`` requests or ``-d`` seconds) or
open loop (``--rate`` requests per second on a fixed schedule: each request carries
its intended start, so latency is measured from when it *should* have started and a
slow server cannot hide behind a slowed client, i.e. no coordinated omission).

``--workers N`` starts N processes (spawn), each with its own uvloop and Client,
attached to one shared-memory timeline; the parent drains it every few ms into
histograms and the output files, so no entry is pickled. Workers receive the
schedule's start time from the parent and report only their sent count at the end.
Ctrl-C sets a stop flag; in-flight requests end, and what was measured is printed.
"""

from __future__ import annotations

import asyncio
import csv
import json
import multiprocessing
import os
import queue as queue_mod
import resource
import signal
import threading
import time
from typing import TextIO

import restiming
from restiming import clock
from restiming._url import parse_url
from restiming.phases import phase_durations

from ._main import (
    EXIT_FETCH_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    _Parser,
    _read_body,
    _UsageError,
    add_request_options,
    client_options,
    parse_headers,
)
from ._stats import HIST_PHASES, Aggregator

__all__ = ["run_bench_cli", "run_bench", "BenchConfig"]

DRAIN_INTERVAL = 0.02
#: Seconds in-flight requests get to finish after a stop (Ctrl-C) before they are cancelled.
STOP_GRACE = 2.0
#: Open loop: requests one worker keeps in flight at most; later ones wait (and show as late).
MAX_IN_FLIGHT = 10_000
CSV_COLUMNS = ("name", "start_time", "intended_start", "duration", "response_status", "error",
               "connection_id", "connection_reused", "encoded_body_size", "decoded_body_size",
               "bytes_sent", "bytes_received") + HIST_PHASES + ("corrected",)


class BenchConfig:
    def __init__(self, urls, *, method="GET", headers=(), body=None, concurrency=10, requests=None,
                 duration=None, rate=None, workers=1, client=None) -> None:
        if concurrency < 1:
            raise _UsageError("concurrency (-c) must be >= 1")
        if requests is not None and requests < 1:
            raise _UsageError("requests (-n) must be >= 1")
        if duration is not None and not duration > 0:
            raise _UsageError("duration (-d) must be > 0 seconds")
        if rate is not None and not rate > 0:
            raise _UsageError("--rate must be > 0 requests per second")
        if workers < 0:
            raise _UsageError("--workers must be >= 0")
        if requests is None and duration is None:
            requests = 1000
        self.urls = list(urls)
        self.method = method
        self.headers = list(headers)
        self.body = body
        self.concurrency = concurrency
        self.requests = requests
        self.duration = duration
        self.rate = rate
        self.workers = workers
        self.client = dict(client or {})

    def share(self, index: int, n: int) -> dict:
        """This worker's part of the load."""
        def split(total):
            return None if total is None else total // n + (1 if index < total % n else 0)
        return {"urls": self.urls, "method": self.method, "headers": self.headers, "body": self.body,
                "concurrency": max(1, split(self.concurrency)), "requests": split(self.requests),
                "duration": self.duration, "rate": None if self.rate is None else self.rate,
                "index": index, "workers": n, "client": self.client}


# ---------------------------------------------------------------- worker side
async def _generate(perf, share: dict, start_ns: int, stop) -> int:
    """Run one worker's load; returns how many requests it started."""
    loop = asyncio.get_running_loop()
    conc = share["concurrency"]
    limits = restiming.Limits(max_connections=conc, max_connections_per_origin=conc)
    urls, method, headers, body = share["urls"], share["method"], share["headers"], share["body"]
    n = share["requests"]
    deadline_ns = None if share["duration"] is None else start_ns + int(share["duration"] * 1e9)
    sent = 0
    stopped = stop.is_set if stop is not None else (lambda: False)

    def more() -> bool:
        return not stopped() and (n is None or sent < n) and (deadline_ns is None or clock.now_ns() < deadline_ns)

    async with restiming.Client(perf, limits=limits, **share["client"]) as client:
        delay = (start_ns - clock.now_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)

        async def one(url, intended=None):
            try:
                await client.fetch(url, method=method, headers=headers, body=body, intended_start=intended)
            except restiming.FetchError:
                pass  # the entry carries the error

        if share["rate"] is None:
            async def looper():
                nonlocal sent
                while more():
                    url = urls[sent % len(urls)]
                    sent += 1
                    await one(url)

            tasks = [loop.create_task(looper()) for _ in range(conc)]
        else:
            period = 1e9 / share["rate"]
            index, workers = share["index"], share["workers"]
            tasks = set()
            k = 0
            while True:
                intended = start_ns + int((k * workers + index) * period)
                if deadline_ns is not None and intended >= deadline_ns:
                    break
                if not more():
                    break
                wait = (intended - clock.now_ns()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
                while len(tasks) >= MAX_IN_FLIGHT and not stopped():
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                task = loop.create_task(one(urls[sent % len(urls)], intended))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
                k += 1
            tasks = list(tasks)
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=0.05)
            if stopped() and pending:
                _, pending = await asyncio.wait(pending, timeout=STOP_GRACE)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
                break
    return sent


def _worker_main(share_name: str, share: dict, stop, results, start_value) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    perf = restiming.Performance.attach(share_name)
    sent = 0
    try:
        results.put(("ready", share["index"]))
        deadline = time.monotonic() + 120
        while not start_value.value and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.002)
        sent = _run_loop(_generate(perf, share, start_value.value, stop))
    finally:
        perf.close()
        results.put(("done", share["index"], sent, perf.dropped_entries, _peak_rss_mb()))


def _peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# ---------------------------------------------------------------- parent side
class _Outputs:
    """Streams drained entries to the files asked for; constant memory."""

    def __init__(self, args, time_origin: float) -> None:
        self.time_origin = time_origin
        self.ndjson = open(args.out, "w", encoding="utf-8") if args.out else None
        self.csv_file = open(args.csv, "w", encoding="utf-8", newline="") if args.csv else None
        self.csv = csv.writer(self.csv_file) if self.csv_file else None
        if self.csv:
            self.csv.writerow(CSV_COLUMNS)
        self.har = None
        if args.har:
            from ._har import har_entry, har_header

            self._har_entry = har_entry
            self.har = open(args.har, "w", encoding="utf-8")
            self.har.write(har_header())
            self._har_first = True

    def write(self, data: dict, method: str) -> None:
        if self.ndjson:
            self.ndjson.write(json.dumps(data) + "\n")
        if self.csv:
            phases = phase_durations(data)
            row = [data.get(c, "") if c not in phases else ("" if phases[c] is None else f"{phases[c]:.6f}")
                   for c in CSV_COLUMNS]
            self.csv.writerow(row)
        if self.har:
            record = dict(data, time_origin=self.time_origin, method=method)
            self.har.write(("" if self._har_first else ",\n") + json.dumps(self._har_entry(record)))
            self._har_first = False

    def close(self) -> None:
        if self.ndjson:
            self.ndjson.close()
        if self.csv_file:
            self.csv_file.close()
        if self.har:
            from ._har import har_footer

            self.har.write(har_footer())
            self.har.close()


class _Progress:
    def __init__(self, out: TextIO, enabled: bool, expected: int | None) -> None:
        self.out = out
        self.enabled = enabled
        self.expected = expected
        self.last = 0.0
        self.started = time.monotonic()

    def update(self, agg: Aggregator, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        elapsed = now - self.started
        done = agg.total
        bar = ""
        if self.expected:
            filled = int(30 * min(done / self.expected, 1.0))
            bar = "[" + "#" * filled + "." * (30 - filled) + "] "
        p99 = agg.hists["total"].percentile(99) / 1e6 if agg.hists["total"].count else 0.0
        errors = sum(agg.errors.values())
        self.out.write(f"\r{bar}{done} done  {done / max(elapsed, 1e-9):8.1f} req/s  "
                       f"{errors} errors  p99 {p99:.2f} ms  {elapsed:5.1f} s ")
        self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self.out.write("\n")


class _Interrupt:
    """Ctrl-C as a flag: the parent checks it between drains, so a SIGINT never
    lands in the middle of taking entries out of the timeline (they would be lost)."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self._old = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, lambda *_: self.flag.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def is_set(self) -> bool:
        return self.flag.is_set()


def _run_in_process(cfg: BenchConfig, perf, collect, progress_line, agg, interrupt: _Interrupt) -> int:
    async def in_process() -> int:
        # Drain and show progress while the load runs in this same loop.
        task = asyncio.ensure_future(_generate(perf, cfg.share(0, 1), clock.now_ns(), interrupt))
        while not task.done():
            await asyncio.wait([task], timeout=0.1)
            collect()
            progress_line.update(agg)
        return task.result()

    return _run_loop(in_process())


def _run_workers(cfg: BenchConfig, perf, collect, progress_line, agg, interrupt: _Interrupt):
    """Start the workers, drain until they are done; returns their "done" messages
    and the monotonic time the load started."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    start_value = ctx.Value("q", 0)
    procs = [ctx.Process(target=_worker_main, daemon=True, name=f"restiming-worker-{i}",
                         args=(perf.share_name, cfg.share(i, cfg.workers), stop, results, start_value))
             for i in range(cfg.workers)]
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
            done[msg[1]] = msg

    wall_start = time.monotonic()
    try:
        deadline = time.monotonic() + 120
        while len(ready) + len(done) < len(procs) and not interrupt.is_set():
            receive(0.1)
            if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                raise RuntimeError("bench workers failed to start")
        # Everyone starts together, a little ahead, so the first intended starts
        # are not already late.
        start_value.value = clock.now_ns() + 20_000_000
        wall_start = progress_line.started = time.monotonic()
        stop_deadline = None
        while len(done) < len(procs):
            if interrupt.is_set() and stop_deadline is None:
                stop.set()
                stop_deadline = time.monotonic() + STOP_GRACE + 10
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                break
            receive(DRAIN_INTERVAL)
            collect()
            progress_line.update(agg)
            if not any(p.is_alive() for p in procs):
                receive(0.5)
                if not any(p.is_alive() for p in procs) and len(done) < len(procs):
                    break  # a worker died without reporting
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        results.close()
        results.join_thread()
    return done, wall_start


def run_bench(cfg: BenchConfig, out: TextIO, args, progress: bool) -> tuple[dict, int, Aggregator]:
    """Run the load; returns (summary, exit code, aggregator)."""
    agg = Aggregator(open_loop=cfg.rate is not None)
    sent_total = 0
    worker_dropped = 0
    worker_rss: list[float] = []
    perf = restiming.Performance(buffer_size=1 << 40, shared=cfg.workers > 0)
    outputs = _Outputs(args, perf.time_origin)
    progress_line = _Progress(out, progress, cfg.requests)
    wall_start = time.monotonic()

    def collect() -> None:
        for entry in perf.drain():
            data = entry.to_dict()
            agg.add(entry, data)
            outputs.write(data, cfg.method)

    with _Interrupt() as interrupt:
        try:
            if cfg.workers == 0:
                sent_total = _run_in_process(cfg, perf, collect, progress_line, agg, interrupt)
            else:
                done, wall_start = _run_workers(cfg, perf, collect, progress_line, agg, interrupt)
                sent_total = sum(msg[2] for msg in done.values())
                worker_dropped = sum(msg[3] for msg in done.values())
                worker_rss = [msg[4] for msg in done.values()]
            collect()
        finally:
            progress_line.update(agg, force=True)
            progress_line.finish()
            outputs.close()
            dropped = perf.dropped_entries + worker_dropped
            perf.close()
        interrupted = interrupt.is_set()
    elapsed = max(time.monotonic() - wall_start, 1e-9)
    summary = {
        "url": cfg.urls[0] if len(cfg.urls) == 1 else cfg.urls,
        "mode": "open" if cfg.rate is not None else "closed",
        "concurrency": cfg.concurrency,
        "rate": cfg.rate,
        "workers": cfg.workers,
        "duration_s": elapsed,
        "sent": sent_total,
        "completed": agg.completed,
        "errors": dict(agg.errors),
        "throughput_rps": agg.total / elapsed,
        "late": ({"count": agg.late_count, "mean_ms": agg.late_sum / agg.late_count if agg.late_count else 0.0,
                  "max_ms": agg.late_max} if cfg.rate is not None else None),
        "phases": agg.phase_table(),
        "dropped_entries": dropped,
        "peak_rss_mb": {"parent": _peak_rss_mb(), "workers": worker_rss},
        "interrupted": interrupted,
    }
    code = EXIT_INTERRUPTED if interrupted else (EXIT_FETCH_ERROR if agg.total < sent_total else EXIT_OK)
    return summary, code, agg


def format_summary(summary: dict) -> str:
    lines = []
    url = summary["url"] if isinstance(summary["url"], str) else ", ".join(summary["url"])
    mode = (f"open loop at {summary['rate']:g} req/s" if summary["mode"] == "open"
            else f"closed loop, {summary['concurrency']} concurrent")
    lines.append(f"restiming bench  {url}")
    lines.append(f"  {mode}, {summary['workers']} worker(s), {summary['duration_s']:.2f} s"
                 + ("  [interrupted]" if summary.get("interrupted") else ""))
    errors = summary["errors"]
    err_text = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
    lines.append(f"  requests: {summary['sent']} sent, {summary['completed']} completed, "
                 f"{sum(errors.values())} errors ({err_text})")
    lines.append(f"  throughput: {summary['throughput_rps']:.1f} req/s")
    if summary.get("late") is not None:
        late = summary["late"]
        lines.append(f"  late starts: {late['count']} (mean {late['mean_ms']:.2f} ms, max {late['max_ms']:.2f} ms)")
    if summary.get("dropped_entries"):
        lines.append(f"  dropped entries: {summary['dropped_entries']}")
    lines.append("")
    header = f"  {'phase (ms)':<11}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'count':>9}"
    lines.append(header)
    for name, row in summary["phases"].items():
        label = "total*" if name == "corrected" else name
        if not row.get("count"):
            lines.append(f"  {label:<11}{'-':>10}{'-':>10}{'-':>10}{'-':>10}{'-':>10}{0:>9}")
            continue
        lines.append(f"  {label:<11}{row['p50_ms']:>10.3f}{row['p90_ms']:>10.3f}{row['p99_ms']:>10.3f}"
                     f"{row['p999_ms']:>10.3f}{row['max_ms']:>10.3f}{row['count']:>9}")
    if "corrected" in summary["phases"]:
        lines.append("  total* = from the intended start (open-loop latency, no coordinated omission)")
    return "\n".join(lines) + "\n"


def bench_parser() -> _Parser:
    p = _Parser(prog="restiming bench", description="Load generator with Resource Timing per request.")
    p.add_argument("urls", nargs="+", metavar="URL", help="URL(s), requested round-robin")
    p.add_argument("-c", "--concurrency", type=int, default=10,
                   help="closed loop: concurrent request loops; open loop: max connections (default 10)")
    p.add_argument("-n", "--requests", type=int, help="total requests (default 1000 unless -d)")
    p.add_argument("-d", "--duration", type=float, help="seconds to run")
    p.add_argument("--rate", type=float, help="open loop: requests per second on a fixed schedule")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0 = in this process; default 1)")
    p.add_argument("--out", metavar="FILE.ndjson", help="stream every entry as NDJSON")
    p.add_argument("--csv", metavar="FILE", help="write every entry as a CSV row")
    p.add_argument("--har", metavar="FILE", help="write every entry to a HAR 1.2 file")
    p.add_argument("--summary", metavar="FILE.json", help="write the summary table as JSON")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    add_request_options(p, data_flags=("--data",))
    return p


def write_reports(summary: dict, agg: Aggregator, args, out: TextIO) -> None:
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    if args.html:
        from ._report import render_html

        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_html(summary, agg.timeline(), agg.samples))
        out.write(f"HTML report: {os.path.abspath(args.html)}\n")


def run_bench_cli(argv: list[str], out: TextIO) -> int:
    args = bench_parser().parse_args(argv)
    for url in args.urls:
        parse_url(url)  # InvalidURL before any worker starts
    cfg = BenchConfig(args.urls, method=args.method, headers=parse_headers(args.header),
                      body=_read_body(args.data), concurrency=args.concurrency, requests=args.requests,
                      duration=args.duration, rate=args.rate, workers=args.workers,
                      client=client_options(args))
    tty = hasattr(out, "isatty") and out.isatty()
    summary, code, agg = run_bench(cfg, out, args, progress=tty and not args.no_progress)
    out.write(format_summary(summary))
    write_reports(summary, agg, args, out)
    return code
