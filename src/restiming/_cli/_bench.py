"""``restiming bench``: a load generator people can gate CI on.

Closed loop (``-c`` concurrent request loops, ``-n`` requests or ``-z`` seconds) or
open loop (``--rate`` requests per second, or ``--stages`` ramping the arrival rate,
on a fixed schedule: see ``_load``). ``--workers N`` runs the load in N processes
(``_runner``) attached to one shared-memory timeline; ``-c`` is the total over all of
them. ``--ray [ADDRESS]`` runs them as engine actors on a Ray cluster
(``restiming.distributed``), records coming back as Arrow batches with histogram
deltas; ``--parquet DIR`` writes every entry as Parquet (local or Ray). The parent drains packed records every few ms into per-group histograms
(``_stats``, no Python entry per request) and, only when asked, NDJSON/CSV/HAR files.

Every request ends as one outcome: an expected status (``--expect-status``, default
200-399), an unexpected status, a network error (by kind) or, in an open loop, dropped
(not sent: ``--max-in-flight`` requests were already in flight). Thresholds
(``_thresholds``) and the outcomes make the exit code (``_common``): 0 passed, 99 a
threshold failed, 1 nothing succeeded / entries went missing / arrivals were dropped,
2 usage, 70 internal error, 130 interrupted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import signal
import threading
import time
from typing import TextIO

import restiming
from restiming._entry import decode_record
from restiming._url import parse_url
from restiming.phases import phase_durations

from restiming._exceptions import ClusterError

from ._common import (
    EXIT_FAILED, Parser, UsageError, add_request_options, client_options, request_headers, sent_headers,
)
from ._hdr import HlogWriter
from ._load import DEFAULT_MAX_IN_FLIGHT
from ._runner import InProcessRunner, ProcessRunner
from ._stats import HIST_PHASES, Aggregator
from ._summary import build_summary, format_summary
from ._thresholds import parse_expect_status, parse_threshold

__all__ = ["run_bench_cli", "run_bench", "BenchConfig", "format_summary", "bench_parser"]

CSV_COLUMNS = ("name", "start_time", "intended_start", "duration", "response_status", "error",
               "connection_id", "connection_reused", "encoded_body_size", "decoded_body_size",
               "bytes_sent", "bytes_received") + HIST_PHASES


def parse_duration(text: str, what: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise UsageError(f"{what} {text!r}: write seconds, e.g. 10, 10s, 500ms, 2m")
    return float(m[1]) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m[2]]


def parse_stages(text: str) -> list[tuple[float, float]]:
    """``'10s:100,30s:500,10s:0'`` -> [(10.0, 100.0), (30.0, 500.0), (10.0, 0.0)]."""
    stages = []
    for part in text.split(","):
        dur, sep, target = part.partition(":")
        if not sep:
            raise UsageError(f"--stages {text!r}: each stage is DURATION:RATE, e.g. 10s:100")
        seconds = parse_duration(dur, "--stages")
        try:
            rate = float(target)
        except ValueError:
            raise UsageError(f"--stages {text!r}: {target!r} is not a rate") from None
        if not seconds > 0 or not rate >= 0 or not math.isfinite(rate):
            raise UsageError(f"--stages {text!r}: durations must be > 0 and rates >= 0")
        stages.append((seconds, rate))
    if not any(r > 0 for _, r in stages):
        raise UsageError(f"--stages {text!r}: every target rate is 0, nothing would be sent")
    return stages


class BenchConfig:
    def __init__(self, urls, *, method="GET", headers=(), body=None, concurrency=10, requests=None,
                 duration=None, rate=None, stages=None, warmup=0.0, workers=1, client=None,
                 max_in_flight=DEFAULT_MAX_IN_FLIGHT, group_by=None, expect_status="200-399",
                 thresholds=()) -> None:
        if concurrency < 1:
            raise UsageError("concurrency (-c) must be >= 1")
        if requests is not None and requests < 1:
            raise UsageError("requests (-n) must be >= 1")
        if duration is not None and not duration > 0:
            raise UsageError("duration (-z) must be > 0 seconds")
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise UsageError("--rate must be > 0 requests per second")
        if workers < 0:
            raise UsageError("--workers must be >= 0")
        if not warmup >= 0:
            raise UsageError("--warmup must be >= 0 seconds")
        if max_in_flight < 1:
            raise UsageError("--max-in-flight must be >= 1")
        if stages and duration is not None:
            raise UsageError("--stages sets the duration; do not give -z as well")
        if requests is None and duration is None and not stages:
            requests = 1000
        self.urls = list(urls)
        self.method = method
        self.headers = list(headers)
        self.body = body
        self.requested_concurrency = concurrency
        self.requested_workers = workers
        # -c is the total: never more workers than connections.
        self.workers = min(workers, concurrency)
        self.concurrency = concurrency
        self.requests = requests
        self.duration = duration
        self.rate = rate
        self.stages = list(stages) if stages else None
        self.warmup = warmup
        self.client = dict(client or {})
        self.max_in_flight = max_in_flight
        self.group_by = group_by if group_by else ("url" if len(set(self.urls)) > 1 else None)
        self.expected, self.expect_text = parse_expect_status(expect_status)
        self.thresholds = [parse_threshold(t) for t in thresholds]

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or self.stages is not None

    def schedule(self):
        if self.stages:
            return self.stages, (self.rate or 0.0)
        if self.rate is not None:
            return [(self.duration if self.duration is not None else math.inf, self.rate)], self.rate
        return None, 0.0

    @property
    def planned_seconds(self) -> float | None:
        if self.stages:
            return sum(s for s, _ in self.stages)
        return self.duration

    @property
    def target(self) -> int | None:
        """Requests the run will send when known in advance (progress and ETA)."""
        if self.requests is not None:
            return self.requests
        if self.stages:
            r0, n = self.rate or 0.0, 0.0
            for seconds, r1 in self.stages:
                n += (r0 + r1) / 2 * seconds
                r0 = r1
            return int(math.ceil(n))
        if self.rate is not None and self.duration is not None:
            return int(math.ceil(self.rate * self.duration))
        return None

    def shares(self) -> list[dict]:
        """One part of the load per worker process (one in-process share for 0)."""
        n = max(self.workers, 1)
        schedule, start_rate = self.schedule()
        warmup_rate = self.rate if self.rate is not None else (self.stages[0][1] if self.stages else None)

        def split(total, i):
            return None if total is None else total // n + (1 if i < total % n else 0)
        return [{"urls": self.urls, "method": self.method, "headers": self.headers, "body": self.body,
                 "concurrency": split(self.concurrency, i),
                 "requests": self.requests if schedule is not None else split(self.requests, i),
                 "duration": self.duration, "schedule": schedule, "start_rate": start_rate,
                 "warmup": self.warmup, "warmup_rate": warmup_rate,
                 "max_in_flight": -(-self.max_in_flight // n),
                 "index": i, "workers": n, "client": self.client} for i in range(n)]


# ---------------------------------------------------------------- outputs
class _Outputs:
    """Streams drained records to the files asked for (entries built only here)."""

    def __init__(self, args, time_origin: float, origin_ns: int, cfg: BenchConfig) -> None:
        self.time_origin = time_origin
        self.origin_ns = origin_ns
        self.cfg = cfg
        out = getattr(args, "out", None)
        csv_path = getattr(args, "csv", None)
        har = getattr(args, "har", None)
        self.ndjson = open(out, "w", encoding="utf-8") if out else None
        self.csv_file = open(csv_path, "w", encoding="utf-8", newline="") if csv_path else None
        self.csv = csv.writer(self.csv_file) if self.csv_file else None
        if self.csv:
            self.csv.writerow(CSV_COLUMNS)
        self.har = None
        if har:
            from ._har import har_entry, har_header

            self._har_entry = har_entry
            self.har = open(har, "w", encoding="utf-8")
            self.har.write(har_header())
            self._har_first = True
        self.active = bool(self.ndjson or self.csv or self.har)
        self._sent_headers: dict[str, list] = {}

    def write_span(self, buf, start: int, end: int) -> None:
        pos = start
        while pos < end:
            n = int.from_bytes(buf[pos:pos + 8], "little")
            data = decode_record(buf, pos + 8, self.origin_ns).to_dict()
            pos += 8 + ((n + 7) & ~7)
            if data["initiator_type"] != "warmup":
                self.write(data)

    def write(self, data: dict) -> None:
        if self.ndjson:
            self.ndjson.write(json.dumps(data) + "\n")
        if self.csv:
            phases = phase_durations(data)
            self.csv.writerow([data.get(c, "") if c not in phases else
                               ("" if phases[c] is None else f"{phases[c]:.6f}") for c in CSV_COLUMNS])
        if self.har:
            url = data["name"]
            sent = self._sent_headers.get(url)
            if sent is None:
                sent = self._sent_headers[url] = sent_headers(url, self.cfg.headers, self.cfg.body)
            record = dict(data, time_origin=self.time_origin, method=self.cfg.method, request_headers=sent,
                          request_body_size=len(self.cfg.body) if self.cfg.body is not None else None)
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
    """One line on stderr, rewritten in place: done/target, rate, errors, p99, ETA."""

    def __init__(self, err: TextIO, enabled: bool, cfg: BenchConfig) -> None:
        self.err = err
        self.enabled = enabled
        self.target = cfg.target
        self.planned = cfg.planned_seconds
        self.warmup = cfg.warmup
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
        measured = max(elapsed - self.warmup, 1e-9)
        done = agg.total
        bar, eta = "", None
        if self.target:
            filled = int(30 * min(done / self.target, 1.0))
            bar = "[" + "#" * filled + "." * (30 - filled) + "] "
            if done:
                eta = (self.target - done) / (done / measured) if self.planned is None else None
        if self.planned is not None:
            eta = self.planned + self.warmup - elapsed
        failed = sum(agg.errors.values()) + sum(c for g in agg.all_groups() for s, c in g.statuses.items()
                                                 if not agg.expected(s))
        rate = done / measured
        target = f"/{self.target}" if self.target else ""
        phase = "warm-up  " if elapsed < self.warmup else ""
        eta_text = f"  ETA {max(eta, 0):.0f} s" if eta is not None else ""
        self.err.write(f"\r{phase}{bar}{done}{target} done  {rate:8.1f} req/s  {failed} errors  "
                       f"p99 {agg.p99_ms():.2f} ms  {elapsed:5.1f} s{eta_text} ")
        self.err.flush()

    def finish(self) -> None:
        if self.enabled:
            self.err.write("\n")


class _Interrupt:
    """Ctrl-C as a flag: the parent checks it between drains, so a SIGINT never
    lands in the middle of taking records out of the timeline (they would be lost)."""

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


# ---------------------------------------------------------------- the run
def _slot_width(seconds: float | None) -> float:
    """Slots for about 100 points over a run of known length (>= 50 whatever it is)."""
    if not seconds:
        return 0.1
    raw = seconds / 100
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= step * m:
            return max(step * m, 0.001)
    return raw


def run_bench(cfg: BenchConfig, err: TextIO, args, progress: bool, runner=None) -> tuple[dict, int, Aggregator]:
    """Run the load; returns (summary, exit code, aggregator)."""
    hlog = None
    hlog_path = getattr(args, "hlog", None)
    remote = getattr(runner, "remote", False)  # records come as batches, not through perf
    perf = restiming.Performance(buffer_size=1 << 40, shared=cfg.workers > 0 and not remote)
    if hlog_path:
        hlog = HlogWriter(open(hlog_path, "w", encoding="utf-8"), time.time())
    agg = Aggregator(open_loop=cfg.open_loop, group_by=cfg.group_by, method=cfg.method,
                     expected=cfg.expected, warmup=cfg.warmup > 0, slot_width=_slot_width(cfg.planned_seconds),
                     hlog=hlog)
    agg.origin_ns = perf._origin_ns
    outputs = _Outputs(args, perf.time_origin, perf._origin_ns, cfg)
    parquet = to_batch = None
    if getattr(args, "parquet", None):
        from restiming.distributed._arrow import ParquetSink, records_to_batch as to_batch

        parquet = ParquetSink(args.parquet)
        where = {"host": platform.node(), "pid": os.getpid(), "actor": -1,
                 "origin_realtime_ns": perf._time.realtime_ns, "origin_monotonic_ns": perf._origin_ns}
    progress_line = _Progress(err, progress, cfg)
    runner = runner or (ProcessRunner() if cfg.workers > 0 else InProcessRunner())
    if remote:
        runner.bind(agg=agg, outputs=outputs, perf=perf, cfg=cfg, parquet=parquet)
    started_at = time.time()
    wall = {"start": time.monotonic()}
    results: list[dict] = []

    def collect() -> None:
        for buf, start, end in perf._drain_raw():
            agg.add_span(buf, start, end)
            if outputs.active:
                outputs.write_span(buf, start, end)
            if parquet is not None:
                batch, _ = to_batch([(buf, start, end)], where)
                if batch is not None:
                    parquet.write("local", batch)

    def tick() -> None:
        collect()
        progress_line.update(agg)

    def on_start(start_ns: int) -> None:
        agg.start(start_ns + int(cfg.warmup * 1e9))
        wall["start"] = progress_line.started = time.monotonic() + (start_ns - restiming.clock.now_ns()) / 1e9
        if hlog is not None:  # intervals count from the end of the warm-up
            hlog.start = time.time() + (start_ns - restiming.clock.now_ns()) / 1e9 + cfg.warmup

    with _Interrupt() as interrupt:
        try:
            results = runner.run(perf, cfg.shares(), tick=tick, stop=interrupt.is_set, on_start=on_start)
            collect()
        finally:
            progress_line.update(agg, force=True)
            progress_line.finish()
            outputs.close()
            if parquet is not None:
                parquet.close()
            agg.close_hlog()
            lost = perf.dropped_entries + sum(r.get("lost", 0) for r in results)
            perf.close()
            if remote:
                runner.close()
        interrupted = interrupt.is_set()
    seconds = runner.seconds() if remote else None  # the actors' own end, not the driver's teardown
    elapsed = max((time.monotonic() - wall["start"] if seconds is None else seconds) - cfg.warmup, 1e-9)
    summary = build_summary(cfg, agg, results, lost, elapsed, interrupted, started_at, args)
    if remote:
        summary["cluster"] = runner.report()
    return summary, summary["exit_code"], agg


def bench_parser() -> Parser:
    p = Parser(prog="restiming bench", description="Load generator with Resource Timing per request.")
    p.add_argument("urls", nargs="+", metavar="URL", help="URL(s), requested round-robin")
    p.add_argument("-c", "--concurrency", type=int, default=10,
                   help="total over all workers; closed loop: concurrent request loops; open loop: "
                        "max connections (default 10)")
    p.add_argument("-n", "--requests", type=int, help="total requests (default 1000 unless -z/--stages)")
    p.add_argument("-z", "--duration", type=lambda s: parse_duration(s, "-z"), help="how long: 10, 10s, 2m")
    p.add_argument("--rate", type=float, help="open loop: requests per second on a fixed schedule")
    p.add_argument("--stages", type=parse_stages, metavar="'10s:100,30s:500'",
                   help="open loop: arrival rate ramping linearly between targets (k6 ramping-arrival-rate); "
                        "starts from --rate or 0")
    p.add_argument("--warmup", type=lambda s: parse_duration(s, "--warmup"), default=0.0, metavar="S",
                   help="seconds of load first, excluded from every statistic")
    p.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                   help=f"open loop: requests in flight at most before arrivals are dropped "
                        f"(default {DEFAULT_MAX_IN_FLIGHT})")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (0 = in this process; default 1); with --ray: engine actors")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the workers as engine actors on a Ray cluster (ADDRESS as ray.init takes it; "
                        "without it: auto, then a local instance); needs restiming[ray]")
    p.add_argument("--parquet", metavar="DIR", help="write every entry as Parquet files in DIR (needs pyarrow)")
    p.add_argument("--expect-status", default="200-399", metavar="CODES",
                   help="statuses that count as success, e.g. 200,201,300-399 or 2xx (default 200-399)")
    p.add_argument("--group-by", choices=("url", "status", "method"),
                   help="per-group rows (default: url when there are several URLs)")
    p.add_argument("--threshold", action="append", default=[], metavar="EXPR",
                   help="pass/fail rule, repeatable: 'total:p(99)<250ms', 'failures:rate<1%%', 'rps:avg>100'")
    p.add_argument("--out", metavar="FILE.ndjson", help="stream every entry as NDJSON")
    p.add_argument("--csv", metavar="FILE", help="write every entry as a CSV row")
    p.add_argument("--har", metavar="FILE", help="write every entry to a HAR 1.2 file")
    p.add_argument("--summary", metavar="FILE.json", help="write the summary (with HdrHistogram blobs) as JSON")
    p.add_argument("--hlog", metavar="FILE", help="write an HdrHistogram interval log of total latency")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    add_request_options(p)
    return p


def write_reports(summary: dict, agg: Aggregator, args, err: TextIO, origin_ns: int | None = None) -> None:
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    if args.html:
        from ._report import render_html

        samples = [decode_record(packed, 8, agg.origin_ns).to_dict() for packed in agg.sample_records()]
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_html(summary, agg.timeline(), samples))
        err.write(f"HTML report: {os.path.abspath(args.html)}\n")


def _check_extra(ray: bool) -> None:
    import importlib.util

    for name in ("ray", "pyarrow") if ray else ("pyarrow",):
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"restiming bench: {'--ray' if ray else '--parquet'} needs {name}: "
                             f"pip install 'restiming[ray]'")


def run_bench_cli(argv: list[str], out: TextIO, err: TextIO) -> int:
    args = bench_parser().parse_args(argv)
    args.argv = argv
    for url in args.urls:
        try:
            parse_url(url)  # before any worker starts
        except ValueError as exc:
            raise UsageError(f"restiming bench: {exc}") from None
    method, headers, body = request_headers(args)
    cfg = BenchConfig(args.urls, method=method, headers=headers, body=body, concurrency=args.concurrency,
                      requests=args.requests, duration=args.duration, rate=args.rate, stages=args.stages,
                      warmup=args.warmup, workers=args.workers, client=client_options(args),
                      max_in_flight=args.max_in_flight, group_by=args.group_by,
                      expect_status=args.expect_status, thresholds=args.threshold)
    if cfg.workers < cfg.requested_workers:
        err.write(f"restiming bench: -c {cfg.concurrency} is the total concurrency: running "
                  f"{cfg.workers} worker(s), not {cfg.requested_workers}\n")
    runner = None
    if args.ray is not None or args.parquet:
        _check_extra(args.ray is not None)
    if args.ray is not None:
        if cfg.workers < 1:
            raise UsageError("restiming bench: --ray needs --workers >= 1 (one engine actor each)")
        from restiming.distributed._runner import RayRunner

        runner = RayRunner(args.ray or None)
        try:
            runner.connect(cfg.workers)  # an unreachable cluster fails here, before any load
        except ClusterError as exc:
            err.write(f"restiming bench: {exc}\n")
            return EXIT_FAILED
    tty = hasattr(err, "isatty") and err.isatty()
    summary, code, agg = run_bench(cfg, err, args, progress=tty and not args.no_progress, runner=runner)
    out.write(format_summary(summary))
    out.flush()
    write_reports(summary, agg, args, err)
    return code
