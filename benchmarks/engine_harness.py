"""Engine benchmark harness: restiming vs aiohttp, aiohttp with tracing, httpx and wrk.

Strategy: one nginx (started here, 127.0.0.1, one worker, keep-alive, no access log,
gzip off) serves one small file; every client fetches the same URL, the same number
of times, at the same concurrency, each on its own fresh uvloop loop, and nothing is
pinned. ``wrk`` against that URL is the ceiling. A run is ``concurrency`` workers
looping over fetches until ``requests`` are done; throughput is requests over the
wall time of that region, and each request's latency is measured around the await
with ``time.perf_counter_ns`` (the same way for every client). Latency samples of
several rounds are merged before percentiles are taken (never averaged).

The fair-comparison rules: aiohttp's connector limit and httpx's pool limits are 100
(>= 64); restiming records a complete entry per fetch into a ``Performance`` whose
buffer holds every one of them (checked after each round, outside the timed region);
aiohttp "+trace" stamps every TraceConfig signal with ``perf_counter_ns`` into a dict
per request and keeps the dicts. Run ``python benchmarks/bench_engine.py`` for the table.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # for ``tests.peers`` when run as a plain script
    sys.path.insert(0, str(_ROOT))

import urllib.parse  # noqa: E402

import h11  # noqa: E402
import uvloop  # noqa: E402

import restiming  # noqa: E402
from restiming._binding import lib  # noqa: E402
from restiming._fields import SLOT  # noqa: E402
from tests.peers.nginx import NginxServer, find_nginx  # noqa: E402

__all__ = ["BenchNginx", "ClientBench", "Result", "Scenario", "SCENARIOS", "CLIENTS", "run_wrk",
           "wrk_available", "find_nginx", "run_all", "markdown_table", "ratio_lines", "environment"]

PATH = "/small.txt"
#: Clients compared; "wrk" is the ceiling and runs as a subprocess.
CLIENTS = ("restiming", "h11-bare", "h11+entries", "aiohttp", "aiohttp+trace", "httpx")
BASELINE = "aiohttp"
POOL_LIMIT = 100  # every client's connection limit (>= the highest concurrency)
WRK_SECONDS = int(os.environ.get("RESTIMING_BENCH_WRK_SECONDS", "5"))
ROUNDS = int(os.environ.get("RESTIMING_BENCH_ROUNDS", "3"))
#: nginx on one core, every client on the other (as the issue measured), when the
#: machine has two or more; RESTIMING_BENCH_PIN=0 turns it off.
PIN = (os.cpu_count() or 1) >= 2 and os.environ.get("RESTIMING_BENCH_PIN", "1") != "0"
SERVER_CPU, CLIENT_CPU = 0, 1
LOADGEN_SECONDS = float(os.environ.get("RESTIMING_BENCH_LOADGEN_SECONDS", "8"))


def pin_client() -> None:
    """Run this process (and the clients it starts) on the client core."""
    if PIN and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CPU})
_SCALE = float(os.environ.get("RESTIMING_BENCH_SCALE", "1"))


@dataclass(frozen=True)
class Scenario:
    mode: str          # "keep-alive" or "new-conn"
    concurrency: int
    requests: int
    warmup: int

    @property
    def key(self) -> str:
        return f"{self.mode}-c{self.concurrency}"


def _n(count: int) -> int:
    return max(64, int(count * _SCALE))


SCENARIOS = (
    Scenario("keep-alive", 64, _n(20_000), 640),
    Scenario("keep-alive", 1, _n(3_000), 200),
    Scenario("new-conn", 64, _n(4_000), 128),
    Scenario("new-conn", 1, _n(1_000), 50),
)


# --------------------------------------------------------------------- the server
class BenchNginx(NginxServer):
    """The test peer's nginx lifecycle with a config tuned for throughput: one
    worker, no access log, gzip off, effectively unlimited keep-alive requests."""

    def _config(self) -> str:
        d, port = self.directory, self.port
        user = "user root;" if os.geteuid() == 0 else ""
        affinity = f"worker_cpu_affinity {1 << SERVER_CPU:b};" if PIN else ""
        temp = "\n".join(f"    {kind}_temp_path {d}/tmp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""{user}
worker_processes 1;
{affinity}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    types {{ text/plain txt; }}
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    gzip off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name _;
        root {d}/www;
    }}
}}
"""


# --------------------------------------------------------------------- results
@dataclass
class Result:
    client: str
    scenario: Scenario
    rates: list[float] = field(default_factory=list)  # req/s per round
    cpu_ns: list[float] = field(default_factory=list)  # client process CPU (user+sys) per request
    latencies_ns: array = field(default_factory=lambda: array("q"))  # merged over rounds
    wrk_latency: dict | None = None  # wrk's own percentiles (mean, p50, p99 in ns)
    note: str = ""

    def add(self, requests: int, elapsed_ns: int, latencies: array, cpu_ns: int = 0) -> None:
        self.rates.append(requests / (elapsed_ns / 1e9))
        self.latencies_ns.extend(latencies)
        if cpu_ns:
            self.cpu_ns.append(cpu_ns / requests)

    @property
    def cpu_us(self) -> float:
        """Median over rounds of the client's CPU time per request, in µs (less
        sensitive than req/s to other load on the machine)."""
        return statistics.median(self.cpu_ns) / 1e3 if self.cpu_ns else float("nan")

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    def latency(self) -> tuple[float, float, float]:
        """(mean, p50, p99) in microseconds."""
        if self.wrk_latency is not None:
            w = self.wrk_latency
            return w["mean"] / 1e3, w["p50"] / 1e3, w["p99"] / 1e3
        lat = sorted(self.latencies_ns)
        if not lat:
            return (float("nan"),) * 3

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, max(0, math.ceil(p / 100 * len(lat)) - 1))] / 1e3

        return sum(lat) / len(lat) / 1e3, pct(50), pct(99)


# --------------------------------------------------------------------- clients
class ClientBench:
    """One client on its own uvloop loop, kept open across rounds.

    ``prepare()`` (untimed): verify the previous round, collect garbage, warm up
    (opens the connections at the scenario's concurrency); ``timed()`` runs the
    measured region and returns (elapsed_ns, latencies)."""

    def __init__(self, kind: str, url: str, scenario: Scenario) -> None:
        if kind not in CLIENTS:
            raise ValueError(f"unknown client {kind!r}")
        self.kind = kind
        self.url = url
        self.scenario = scenario
        self.loop = uvloop.new_event_loop()
        self.perf: restiming.Performance | None = None
        self.traces: list[dict] = []
        self._client = None
        self._fetch = None
        self._expected = 0  # responses (entries / trace dicts) since the last check
        self.loop.run_until_complete(self._open())

    # -- lifecycle
    async def _open(self) -> None:
        keepalive = self.scenario.mode == "keep-alive"
        url = self.url
        if self.kind == "restiming":
            # Big enough for every round's entries; drained and checked between rounds.
            self.perf = restiming.Performance(buffer_size=1_000_000)
            limits = restiming.Limits(max_connections=POOL_LIMIT, max_connections_per_origin=POOL_LIMIT,
                                      keepalive_expiry=5.0 if keepalive else 0)
            client = restiming.Client(self.perf, limits=limits)
            fetch = client.fetch

            async def one() -> None:
                r = await fetch(url)
                if r.status != 200 or len(r.body) != 1024:
                    raise AssertionError(f"restiming: unexpected response {r.status} {len(r.body)}")
        elif self.kind in ("h11-bare", "h11+entries"):
            if self.kind == "h11+entries":
                self.perf = restiming.Performance(buffer_size=1_000_000)
            client = _BareH11(url, keepalive, self.perf)
            fetch = client.fetch

            async def one() -> None:
                status, body = await fetch()
                if status != 200 or len(body) != 1024:
                    raise AssertionError(f"h11-bare: unexpected response {status} {len(body)}")
        elif self.kind.startswith("aiohttp"):
            import aiohttp

            traces = []
            if self.kind == "aiohttp+trace":
                traces = [_stamping_trace_config(self.traces)]
            connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=0, force_close=not keepalive)
            client = aiohttp.ClientSession(connector=connector, trace_configs=traces)
            get = client.get

            async def one() -> None:
                async with get(url) as r:
                    body = await r.read()
                    if r.status != 200 or len(body) != 1024:
                        raise AssertionError(f"aiohttp: unexpected response {r.status} {len(body)}")
        else:
            import httpx

            limits = httpx.Limits(max_connections=POOL_LIMIT,
                                  max_keepalive_connections=POOL_LIMIT if keepalive else 0)
            client = httpx.AsyncClient(limits=limits)
            get = client.get

            async def one() -> None:
                r = await get(url)
                if r.status_code != 200 or len(r.content) != 1024:
                    raise AssertionError(f"httpx: unexpected response {r.status_code} {len(r.content)}")
        self._client = client
        self._fetch = one

    def close(self) -> None:
        try:
            self.check()
            if self._client is not None:
                if self.kind in ("restiming", "h11-bare", "h11+entries"):
                    self.loop.run_until_complete(self._client.close())
                elif self.kind.startswith("aiohttp"):
                    self.loop.run_until_complete(self._client.close())
                else:
                    self.loop.run_until_complete(self._client.aclose())
            self.loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            self.loop.close()
            if self.perf is not None:
                self.perf.close()

    def __enter__(self) -> "ClientBench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- rounds
    def check(self) -> None:
        """Every fetch since the last check left a complete record behind."""
        expected, self._expected = self._expected, 0
        if self.perf is not None:
            entries = self.perf.drain()
            if len(entries) != expected:
                raise AssertionError(f"restiming recorded {len(entries)} entries for {expected} fetches "
                                     f"(dropped: {self.perf.dropped_entries})")
            for e in entries[:: max(1, len(entries) // 50)]:
                if e.response_status != 200 or e.error is not None or not (
                        e.fetch_start <= e.request_start <= e.response_start <= e.response_end):
                    raise AssertionError(f"incomplete entry: {e.to_json()}")
        elif self.kind == "aiohttp+trace":
            if len(self.traces) != expected:
                raise AssertionError(f"aiohttp tracing kept {len(self.traces)} dicts for {expected} fetches")
            for d in self.traces[:: max(1, len(self.traces) // 50)]:
                if "request_end" not in d or "response_chunk_received" not in d:
                    raise AssertionError(f"incomplete trace: {d}")
            self.traces.clear()

    def prepare(self) -> None:
        self.check()
        self.loop.run_until_complete(self._drive(self.scenario.warmup, self.scenario.concurrency))
        self.check()
        gc.collect()

    def timed(self) -> tuple[int, array, int]:
        """(elapsed_ns, latencies, cpu_ns) of ``requests`` fetches."""
        s = self.scenario
        cpu = time.process_time_ns()
        elapsed, lat = self.loop.run_until_complete(self._drive(s.requests, s.concurrency))
        return elapsed, lat, time.process_time_ns() - cpu

    async def _drive(self, requests: int, concurrency: int) -> tuple[int, array]:
        fetch = self._fetch
        clock = time.perf_counter_ns
        lat = array("q")
        record = lat.append
        base, extra = divmod(requests, concurrency)

        async def worker(count: int) -> None:
            for _ in range(count):
                t0 = clock()
                await fetch()
                record(clock() - t0)

        workers = [worker(base + (1 if i < extra else 0)) for i in range(concurrency)]
        start = clock()
        if concurrency == 1:
            await workers[0]
        else:
            await asyncio.gather(*workers)
        elapsed = clock() - start
        self._expected += requests
        return elapsed, lat


class _BareProtocol(asyncio.Protocol):
    """h11 driven from data_received, one Future per request: the design's floor."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport = None
        self.waiter = None
        self.status = 0
        self.body = []
        self.lost = False
        self.head_ns = self.end_ns = self.first_ns = 0  # h11+entries only
        self.event = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        conn = self.h11
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            t = type(event)
            if t is h11.Data:
                self.body.append(event.data)
            elif t is h11.Response:
                self.status = event.status_code
                self.event = event
            elif t is h11.EndOfMessage:
                self.waiter.set_result(None)
                return
            elif event is h11.NEED_DATA:
                return
            else:
                raise AssertionError(f"h11-bare: unexpected {event!r}")

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("lost"))


class _StampingProtocol(_BareProtocol):
    """The bare protocol plus the arrival stamp of each chunk (C clock)."""

    def data_received(self, data: bytes) -> None:
        now = _now()
        if not self.first_ns:
            self.first_ns = now
        self.end_ns = now
        super().data_received(data)


class _BareH11:
    """The floor of the design: h11 + asyncio.Protocol on uvloop, no timing, no pool
    logic (an idle stack of connections), no timeouts, one Future per request.

    With ``perf`` ("h11+entries"), the floor of a client that records complete
    entries: the same, plus the C-clock stamps of every phase and one packed record
    per request published into ``perf`` (restiming's own recorder), still without
    pool limits, deadlines, validation, redirects or Timing-Allow-Origin."""

    def __init__(self, url: str, keepalive: bool, perf=None) -> None:
        self.url = url
        self.perf = perf
        u = urllib.parse.urlsplit(url)
        self.addr = (u.hostname, u.port)
        self.keepalive = keepalive
        headers = [("Host", u.netloc), ("User-Agent", "h11-bare"), ("Accept", "*/*")]
        if not keepalive:
            headers.append(("Connection", "close"))
        self.request = h11.Request(method="GET", target=u.path or "/", headers=headers)
        self.idle: list = []

    async def fetch(self):
        if self.perf is not None:
            return await self._fetch_recorded()
        loop = asyncio.get_running_loop()
        if self.idle:
            p = self.idle.pop()
        else:
            _, p = await loop.create_connection(_BareProtocol, *self.addr)
        conn = p.h11
        p.body = []
        p.waiter = loop.create_future()
        p.transport.write(conn.send(self.request) + conn.send(h11.EndOfMessage()))
        await p.waiter
        return self._done(p)

    async def _fetch_recorded(self):
        loop = asyncio.get_running_loop()
        rec = self.perf.begin(self.url, "fetch")
        st = rec.stamps
        if self.idle:
            p = self.idle.pop()
            st[_S_DLS] = st[_S_DLE] = st[_S_CS] = st[_S_CE] = st[_S_FETCH]
            reused = True
        else:
            st[_S_DLS] = st[_S_DLE] = st[_S_CS] = _now()
            _, p = await loop.create_connection(_StampingProtocol, *self.addr)
            st[_S_CE] = _now()
            reused = False
        conn = p.h11
        p.body = []
        p.first_ns = 0
        p.waiter = loop.create_future()
        data = conn.send(self.request) + conn.send(h11.EndOfMessage())
        st[_S_REQS] = _now()
        p.transport.write(data)
        st[_S_REQE] = _now()
        await p.waiter
        st[_S_FINAL] = p.first_ns
        st[_S_END] = p.end_ns
        status, body = self._done(p)
        ctype = ""
        for name, value in p.event.headers:
            if name == b"content-type":
                ctype = value.decode("latin-1")
        rec.finish_response(status, len(body), len(body), "http/1.1", ctype, "", "", 0, reused, "", "",
                            len(data), 0, None, True, "")
        return status, body

    def _done(self, p):
        conn = p.h11
        body = b"".join(p.body)
        if self.keepalive and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.idle.append(p)
        else:
            p.transport.close()
        return p.status, body

    async def close(self) -> None:
        for p in self.idle:
            p.transport.close()
        self.idle.clear()


_now = lib.rt_now_ns
_S_FETCH, _S_DLS, _S_DLE = SLOT["fetch_start"], SLOT["domain_lookup_start"], SLOT["domain_lookup_end"]
_S_CS, _S_CE, _S_REQS, _S_REQE = SLOT["connect_start"], SLOT["connect_end"], SLOT["request_start"], SLOT["request_end"]
_S_FINAL, _S_END = SLOT["final_response_headers_start"], SLOT["response_end"]


def _stamping_trace_config(sink: list):
    """A TraceConfig that stamps every signal into one dict per request; the dict is
    kept (like an entry) when the request ends."""
    import aiohttp

    clock = time.perf_counter_ns
    tc = aiohttp.TraceConfig()

    def first(name: str):
        async def handler(session, ctx, params) -> None:
            stamps = getattr(ctx, "stamps", None)
            if stamps is None:
                stamps = ctx.stamps = {}
            stamps.setdefault(name, clock())
        return handler

    def every(name: str):  # chunk signals: first and last occurrence
        last = name + "_last"

        async def handler(session, ctx, params) -> None:
            t = clock()
            stamps = ctx.stamps
            stamps.setdefault(name, t)
            stamps[last] = t
        return handler

    async def on_request_start(session, ctx, params) -> None:
        ctx.stamps = {"request_start": clock()}

    async def on_request_end(session, ctx, params) -> None:
        stamps = ctx.stamps
        stamps["request_end"] = clock()
        sink.append(stamps)

    tc.on_request_start.append(on_request_start)
    for signal in ("dns_resolvehost_start", "dns_resolvehost_end", "dns_cache_hit", "dns_cache_miss",
                   "connection_queued_start", "connection_queued_end", "connection_create_start",
                   "connection_create_end", "connection_reuseconn", "request_headers_sent",
                   "request_exception", "request_redirect"):
        getattr(tc, "on_" + signal).append(first(signal))
    tc.on_request_chunk_sent.append(every("request_chunk_sent"))
    tc.on_response_chunk_received.append(every("response_chunk_received"))
    tc.on_request_end.append(on_request_end)
    tc.freeze()
    return tc


# --------------------------------------------------------------------- wrk
def wrk_available() -> bool:
    return shutil.which("wrk") is not None


_UNITS = {"us": 1e3, "ms": 1e6, "s": 1e9}


def _duration_ns(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> tuple[float, dict]:
    """Requests/sec and the latency (mean, p50, p99 in ns) from ``wrk --latency``."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    mean = re.search(r"^\s+Latency\s+(\S+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rate and mean and p50 and p99):
        raise ValueError(f"cannot parse wrk output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*", output)
    if errors:
        raise AssertionError(f"wrk saw errors:\n{output}")
    return float(rate.group(1)), {"mean": _duration_ns(mean.group(1)), "p50": _duration_ns(p50.group(1)),
                                  "p99": _duration_ns(p99.group(1))}


def run_wrk(url: str, scenario: Scenario, seconds: int = WRK_SECONDS) -> Result:
    cmd = (["taskset", "-c", str(CLIENT_CPU)] if PIN and shutil.which("taskset") else []) + ["wrk", "-t1", f"-c{scenario.concurrency}", f"-d{seconds}s", "--latency"]
    if scenario.mode == "new-conn":
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rate, latency = parse_wrk(out)
    res = Result("wrk", scenario, [rate], wrk_latency=latency, note=" ".join(cmd[:-1]))
    return res


# --------------------------------------------------------------------- load generators
_LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Fetcher(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get({path!r})
"""


def locust_available() -> bool:
    # Never imported here: importing locust monkey-patches the process with gevent.
    import importlib.util

    return importlib.util.find_spec("locust") is not None


def run_locust(url: str, users: int = 64, seconds: float = LOADGEN_SECONDS) -> float:
    """Requests/s of locust's FastHttpUser, one process, ``users`` users, no wait
    time, statistics reset once every user runs."""
    import csv
    import tempfile
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    with tempfile.TemporaryDirectory() as d:
        locustfile = os.path.join(d, "locustfile.py")
        with open(locustfile, "w") as f:
            f.write(_LOCUSTFILE.format(path=u.path))
        cmd = [sys.executable, "-m", "locust", "-f", locustfile, "--headless", "-u", str(users), "-r", str(users),
               "-t", f"{seconds:g}s", "-H", f"{u.scheme}://{u.netloc}", "--only-summary", "--reset-stats",
               "--csv", os.path.join(d, "stats"), "--loglevel", "ERROR"]
        subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
        with open(os.path.join(d, "stats_stats.csv")) as f:
            rows = {row["Name"]: row for row in csv.DictReader(f)}
        row = rows["Aggregated"]
        if int(row["Failure Count"]):
            raise AssertionError(f"locust saw failures: {row}")
        return float(row["Requests/s"])


def run_restiming_bench(url: str, concurrency: int = 64, workers: int = 1,
                        seconds: float = LOADGEN_SECONDS) -> float:
    """Requests/s of ``restiming bench --workers N -c C`` over ``seconds``."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        summary = os.path.join(d, "summary.json")
        cmd = [sys.executable, "-m", "restiming", "bench", url, "--workers", str(workers), "-c", str(concurrency),
               "-z", f"{seconds:g}", "--summary", summary]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise AssertionError(f"restiming bench exited {out.returncode}: {out.stderr[-2000:]}")
        with open(summary) as f:
            data = json.load(f)
    if data["errors"] or data["unexpected"] or data["missing"]:
        raise AssertionError(f"restiming bench saw failures: {data['errors']} errors")
    return float(data["throughput_rps"])


def run_loadgens(url: str, rounds: int = ROUNDS, log=print) -> dict[str, list[float]]:
    """``restiming bench --workers 1 -c 64`` against locust FastHttpUser (one process,
    64 users) on the client core, rounds interleaved."""
    rates: dict[str, list[float]] = {"restiming bench --workers 1 -c 64": [], "locust FastHttpUser, 64 users": []}
    for r in range(rounds):
        for name, fn in zip(rates, (run_restiming_bench, run_locust)):
            rates[name].append(fn(url))
            log(f"  load generators round {r + 1}/{rounds} {name:36} {rates[name][-1]:9.0f} req/s")
    return rates


def loadgen_table(rates: dict[str, list[float]]) -> str:
    names = list(rates)
    base = statistics.median(rates[names[1]])
    lines = ["| load generator | req/s (median) | min–max | vs locust |", "|---|---:|---:|---:|"]
    for name in names:
        v = rates[name]
        lines.append(f"| {name} | {statistics.median(v):,.0f} | {min(v):,.0f}–{max(v):,.0f} | "
                     f"{statistics.median(v) / base:.2f}× |")
    ratio = statistics.median(rates[names[0]]) / base
    lines += ["", f"- target restiming bench >= 1.3× locust: {ratio:.2f} → {'MET' if ratio >= 1.3 else 'NOT MET'}"]
    return "\n".join(lines)


# --------------------------------------------------------------------- whole run
def run_all(url: str, rounds: int = ROUNDS, clients=CLIENTS, scenarios=SCENARIOS,
            with_wrk: bool = True, log=print) -> list[Result]:
    """Every scenario, rounds interleaved across clients (ABCD ABCD ...) so drift in
    the machine's speed hits every client alike."""
    results: list[Result] = []
    for s in scenarios:
        benches = {k: ClientBench(k, url, s) for k in clients}
        per = {k: Result(k, s) for k in clients}
        try:
            for r in range(rounds):
                for k, b in benches.items():
                    b.prepare()
                    per[k].add(s.requests, *b.timed())
                    log(f"  {s.key:14} round {r + 1}/{rounds} {k:14} {per[k].rates[-1]:9.0f} req/s")
        finally:
            for b in benches.values():
                b.close()
        results.extend(per.values())
        if with_wrk and wrk_available():
            w = run_wrk(url, s)
            log(f"  {s.key:14} {'wrk':>24} {w.rate:9.0f} req/s")
            results.append(w)
    return results


def _find(results, client: str, scenario: Scenario) -> Result | None:
    for r in results:
        if r.client == client and r.scenario == scenario:
            return r
    return None


def _ratio(a: Result | None, b: Result | None) -> float | None:
    if a is None or b is None or not a.rates or not b.rates:
        return None
    return a.rate / b.rate


def _fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def markdown_table(results: list[Result]) -> str:
    lines = ["| client | mode | concurrency | requests | req/s | range | vs aiohttp | vs wrk | CPU µs/req "
             "| mean µs | p50 µs | p99 µs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r.scenario
        base = _find(results, BASELINE, s)
        wrk = _find(results, "wrk", s)
        mean, p50, p99 = r.latency()
        n = f"{WRK_SECONDS} s" if r.client == "wrk" else f"{s.requests} × {len(r.rates)}"
        lines.append(f"| {r.client} | {s.mode} | {s.concurrency} | {n} | {r.rate:,.0f} | {_spread(r)} | "
                     f"{_fmt_ratio(_ratio(r, base))} | {_fmt_ratio(_ratio(r, wrk))} | "
                     f"{'—' if r.client == 'wrk' else f'{r.cpu_us:,.0f}'} | "
                     f"{mean:,.0f} | {p50:,.0f} | {p99:,.0f} |")
    return "\n".join(lines)


#: (scenario mode, concurrency, other client, target: restiming/other >= this)
TARGETS = (("keep-alive", 64, "h11-bare", 0.65), ("keep-alive", 64, "aiohttp", 0.95),
           ("keep-alive", 64, "aiohttp+trace", 1.2), ("new-conn", 64, "aiohttp", 1.0),
           ("new-conn", 1, "aiohttp", 1.0))
#: keep-alive c=1: restiming's mean latency <= this × aiohttp's
LATENCY_TARGET = 1.05


def _spread(r: Result) -> str:
    return f"{min(r.rates):,.0f}–{max(r.rates):,.0f}" if r.rates else "—"


def ratio_lines(results: list[Result]) -> list[str]:
    out = []
    for s in _scenarios(results):
        me = _find(results, "restiming", s)
        if me is None:
            continue
        parts = []
        for other in ("h11-bare", "h11+entries", "aiohttp", "aiohttp+trace", "httpx", "wrk"):
            x = _ratio(me, _find(results, other, s))
            if x is not None:
                parts.append(f"restiming/{other} = {x:.2f}")
        out.append(f"- {s.mode}, c={s.concurrency}: " + ", ".join(parts))
    for mode, c, other, target in TARGETS:
        s = next((x for x in _scenarios(results) if x.mode == mode and x.concurrency == c), None)
        me, them = (_find(results, "restiming", s), _find(results, other, s)) if s else (None, None)
        x = _ratio(me, them)
        if x is not None:
            lo = min(me.rates) / max(them.rates)
            hi = max(me.rates) / min(them.rates)
            out.append(f"- target {mode} c={c} restiming/{other} >= {target}: {x:.2f} (round extremes "
                       f"{lo:.2f}–{hi:.2f}) → {'MET' if x >= target else 'NOT MET'}")
    s = next((x for x in _scenarios(results) if x.mode == "keep-alive" and x.concurrency == 1), None)
    me, base = (_find(results, "restiming", s), _find(results, "aiohttp", s)) if s else (None, None)
    if me is not None and base is not None and me.latencies_ns and base.latencies_ns:
        (m1, a1, b1), (m2, a2, b2) = me.latency(), base.latency()
        ok = m1 <= LATENCY_TARGET * m2
        out.append(f"- target keep-alive c=1 mean latency restiming <= {LATENCY_TARGET}× aiohttp: "
                   f"{m1:.0f} vs {m2:.0f} µs ({m1 / m2:.2f}×; p50 {a1:.0f} vs {a2:.0f}, p99 {b1:.0f} vs {b2:.0f}) "
                   f"→ {'MET' if ok else 'NOT MET'}")
    return out


def environment(rounds: int = ROUNDS) -> str:
    """One line naming what the figures were measured with."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    nginx = "nginx ?"
    binary = find_nginx()
    if binary:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
        nginx = out.rsplit(":", 1)[-1].strip() or nginx
    wrk = "wrk" if wrk_available() else "no wrk"
    pinned = (f"nginx pinned to CPU {SERVER_CPU}, clients to CPU {CLIENT_CPU}" if PIN else "nothing pinned")
    return (f"_{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, uvloop {v('uvloop')}, "
            f"aiohttp {v('aiohttp')}, httpx {v('httpx')}, h11 {v('h11')}, locust {v('locust')}, {nginx} "
            f"(1 worker), {wrk}; {pinned}; load average {os.getloadavg()[0]:.2f} at the end; req/s is the "
            f"median over rounds ({rounds}, interleaved across clients), the range is min–max over rounds._")


def _scenarios(results: list[Result]) -> list[Scenario]:
    seen: list[Scenario] = []
    for r in results:
        if r.scenario not in seen:
            seen.append(r.scenario)
    return seen
