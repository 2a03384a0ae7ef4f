"""Engine throughput and latency: restiming vs the bare h11 client (the design's floor),
aiohttp (with and without tracing), httpx, and wrk as the ceiling, all against one
local nginx in one run; then ``restiming bench --workers 1 -c 64`` vs locust's
FastHttpUser (one process, 64 users).

Baselines: the bare h11 client (h11 driven from an asyncio.Protocol on uvloop, one
Future per request, no timing, no pool logic, no timeouts), the same plus complete
entries ("h11+entries": C-clock stamps of every phase and one packed record per request,
the floor of any client that records what restiming records), aiohttp without tracing
(the named baseline of the table), aiohttp with a TraceConfig stamping every signal,
httpx, wrk, locust. Ratios are measured in the same run. The harness
(``engine_harness.py``) explains the fairness rules. Under pytest-benchmark one round
is the timed region of N requests (the same N for every client), so time ratios are
throughput ratios; the table also gives the client's CPU time per request, which
other load on the machine disturbs less than wall-clock req/s.

    python -m pytest benchmarks/bench_engine.py --benchmark-enable -s
    python benchmarks/bench_engine.py --reps 5   # prints the Markdown tables

Environment: ``RESTIMING_BENCH_ROUNDS`` (default 3), ``RESTIMING_BENCH_SCALE``
(multiplies the request counts, default 1), ``RESTIMING_BENCH_WRK_SECONDS`` (5).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_harness as h  # noqa: E402

try:
    import pytest
except ImportError:  # pragma: no cover - the plain-script path needs no pytest
    pytest = None


def _order(r: h.Result) -> tuple:
    clients = h.CLIENTS + ("wrk",)
    return (h.SCENARIOS.index(r.scenario) if r.scenario in h.SCENARIOS else 99, clients.index(r.client))


def render(results: list[h.Result], rounds: int = h.ROUNDS) -> str:
    results = sorted(results, key=_order)
    return "\n".join([h.markdown_table(results), "", *h.ratio_lines(results), "", h.environment(rounds)])


if pytest is not None:
    _RESULTS: list[h.Result] = []

    @pytest.fixture(scope="module")
    def bench_url():
        if h.find_nginx() is None:
            pytest.skip("nginx binary not found")
        server = h.BenchNginx().start()
        yield server.url(h.PATH)
        server.cleanup()

    @pytest.mark.parametrize("scenario", h.SCENARIOS, ids=lambda s: s.key)
    @pytest.mark.parametrize("client", h.CLIENTS)
    def test_engine(benchmark, bench_url, client, scenario):
        result = h.Result(client, scenario)
        benchmark.group = f"engine {scenario.key}"
        with h.ClientBench(client, bench_url, scenario) as bench:
            def timed():
                result.add(scenario.requests, *bench.timed())

            benchmark.pedantic(timed, setup=bench.prepare, rounds=h.ROUNDS, iterations=1)
        mean, p50, p99 = result.latency()
        if client == h.BASELINE:  # conftest.py's same-run ratio summary
            benchmark.extra_info["baseline"] = True
        benchmark.extra_info.update(records=scenario.requests, req_per_s=round(result.rate),
                                    cpu_us_per_req=round(result.cpu_us), mean_us=round(mean),
                                    p50_us=round(p50), p99_us=round(p99))
        _RESULTS.append(result)

    @pytest.mark.parametrize("scenario", h.SCENARIOS, ids=lambda s: s.key)
    def test_wrk(benchmark, bench_url, scenario):
        if not h.wrk_available():
            pytest.skip("wrk not installed")
        benchmark.group = f"engine ceiling {scenario.key}"  # fixed duration: not a same-N ratio
        result = benchmark.pedantic(h.run_wrk, args=(bench_url, scenario), rounds=1, iterations=1)
        benchmark.extra_info.update(req_per_s=round(result.rate))
        _RESULTS.append(result)

    def test_report(request):
        """The table (printed with ``-s``) and the same-run ratios (also in the terminal
        summary); never fails on a ratio: targets are reported, not asserted."""
        if not _RESULTS:
            pytest.skip("no engine results in this session")
        print("\n\n" + render(_RESULTS) + "\n")
        try:
            add_line = request.getfixturevalue("report")  # benchmarks/conftest.py
        except pytest.FixtureLookupError:
            return
        for line in h.ratio_lines(sorted(_RESULTS, key=_order)):
            add_line("engine " + line.lstrip("- "))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=h.ROUNDS, help="rounds per client, interleaved (default %(default)s)")
    parser.add_argument("--scenarios", default=",".join(s.key for s in h.SCENARIOS),
                        help="comma-separated scenario keys (default: all)")
    parser.add_argument("--no-loadgens", action="store_true", help="skip restiming bench vs locust")
    args = parser.parse_args(argv)
    if not h.wrk_available():
        print("note: wrk not found, no ceiling column", file=sys.stderr)
    h.pin_client()
    started = time.monotonic()
    wanted = set(args.scenarios.split(","))
    scenarios = [s for s in h.SCENARIOS if s.key in wanted]
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    loadgens = None
    with h.BenchNginx() as server:
        url = server.url(h.PATH)
        print(f"nginx {url}, {args.reps} rounds per client (interleaved), median req/s; "
              f"latencies merged over rounds", file=sys.stderr)
        results = h.run_all(url, rounds=args.reps, scenarios=scenarios, log=log)
        if not args.no_loadgens and h.locust_available():
            loadgens = h.run_loadgens(url, rounds=args.reps, log=log)
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(render(results, args.reps))
    if loadgens is not None:
        print()
        print(h.loadgen_table(loadgens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
