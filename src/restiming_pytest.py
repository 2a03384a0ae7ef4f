"""restiming's pytest plugin (entry point ``pytest11: restiming``; ``pip install restiming[pytest]``).

Fixtures:

- ``resource_timing``: a fresh ``restiming.Performance`` for the test. When the test
  fails, its report gets a "restiming waterfall" section: one line per fetch with a
  bar of its phases and their durations.
- ``restiming_client``: a ``restiming.Client`` on that timeline. Sync tests call
  ``restiming_client.fetch_sync(url, ...)``, which drives a private event loop; async
  tests (pytest-asyncio or anyio) ``await restiming_client.fetch(url, ...)`` or use
  ``restiming_client.stream(...)`` on their own loop. Each loop gets its own client
  (a client belongs to one loop); all are closed at teardown.
- ``fetch_benchmark(url_or_urls, *, rounds=20, warmup_rounds=2, concurrency=1,
  allow_failures=False, **fetch_kwargs)``: runs the fetches through pytest-benchmark's
  ``benchmark.pedantic`` (one round = every URL once, ``concurrency`` at a time), so its
  table, ``--benchmark-json``, ``--benchmark-compare`` and ``--benchmark-compare-fail``
  work, and puts per-phase p50/p90/p99/max (ms) of the measured rounds' entries, new vs
  reused connection counts and failures into ``benchmark.extra_info["restiming"]``.
  A failed fetch fails the test unless ``allow_failures=True``.

Strategy: pytest imports this module at startup whenever restiming is installed, so it
is a top-level module (importing ``restiming.anything`` would import restiming itself)
and imports nothing but pytest at module level; restiming, asyncio and pytest-benchmark
are imported when a fixture is first used. Load it explicitly with
``-p restiming_pytest`` where the entry point is not installed.
"""

from __future__ import annotations

import math

import pytest

__all__ = ["resource_timing", "restiming_client", "fetch_benchmark", "waterfall", "summarize"]

_PERF_KEY = pytest.StashKey()
_BAR_WIDTH = 40
# One character per phase in the waterfall bar (restiming.phases.PHASES order).
_GLYPHS = {"redirect": "R", "queue": ".", "dns": "d", "connect": "c", "tls": "s", "request": "q",
           "wait": "w", "receive": "r"}
_PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))


# ------------------------------------------------------------------ waterfall
def waterfall(entries, width: int = _BAR_WIDTH) -> str:
    """A compact text waterfall: one line per entry, bars on a shared time axis.

    ``R`` redirect, ``.`` queue, ``d`` DNS, ``c`` connect, ``s`` TLS, ``q`` request,
    ``w`` wait, ``r`` receive; ``x`` the whole of a failed or opaque fetch.
    """
    from restiming.phases import PHASES, phase_durations, phase_spans

    entries = sorted(entries, key=lambda e: e.start_time)
    if not entries:
        return "(no fetches)"
    t0 = min(e.start_time for e in entries)
    t1 = max(e.response_end or e.start_time for e in entries)
    scale = width / max(t1 - t0, 1e-9)
    legend = " ".join(f"{g}={p}" for p, g in _GLYPHS.items())
    lines = [f"{len(entries)} fetch(es) over {t1 - t0:.3f} ms; bar: {legend}, x=opaque/failed"]
    for e in entries:
        bar = [" "] * width
        spans = phase_spans(e)

        def paint(a: float, b: float, glyph: str) -> None:
            lo = min(int((a - t0) * scale), width - 1)
            hi = max(min(int(math.ceil((b - t0) * scale)), width), lo + 1)
            for i in range(lo, hi):
                bar[i] = glyph

        if any(spans.values()):
            for phase in PHASES:
                if spans[phase]:
                    paint(*spans[phase], _GLYPHS[phase])
        else:
            paint(e.start_time, e.response_end or e.start_time, "x")
        durations = phase_durations(e)
        parts = " ".join(f"{p}={durations[p]:.2f}" for p in PHASES if durations[p])
        status = f"ERR {e.error}" if e.error else str(e.response_status)
        reuse = " reused" if e.connection_reused else ""
        lines.append(f"|{''.join(bar)}| {status:>5} {e.duration:9.3f} ms {e.name}{reuse}")
        if parts:
            lines.append(f"  {parts}")
        if e.error_message:
            lines.append(f"  {e.error_message}")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    perf = item.stash.get(_PERF_KEY, None)
    if perf is None or not report.failed:
        return
    try:
        entries = perf.get_entries()
    except Exception as exc:  # the report must not fail because of us
        report.sections.append(("restiming waterfall", f"(entries unavailable: {exc!r})"))
        return
    report.sections.append(("restiming waterfall", waterfall(entries)))


# ------------------------------------------------------------------- fixtures
@pytest.fixture
def resource_timing(request):
    """A fresh ``restiming.Performance`` for this test (waterfall shown if it fails)."""
    import restiming

    perf = restiming.Performance()
    request.node.stash[_PERF_KEY] = perf
    yield perf  # the failure report (the call phase's) is made before this teardown
    perf.close()


class SyncAsyncClient:
    """A ``restiming.Client`` usable from sync tests (``fetch_sync``) and async tests
    (``await fetch``, ``stream``), one underlying client per event loop."""

    def __init__(self, performance, **options) -> None:
        self.performance = performance
        self._options = options
        self._clients: dict = {}  # loop -> restiming.Client
        self._runner = None

    async def client(self):
        """The client of the running loop (made on first use)."""
        import asyncio

        import restiming

        loop = asyncio.get_running_loop()
        pair = self._clients.get(loop)
        if pair is None:
            client = restiming.Client(self.performance, **self._options)
            # The loop may be closed before this fixture's teardown (anyio closes its
            # runner right after the test): an async generator the loop knows about is
            # closed by the loop's own shutdown_asyncgens(), which then closes the client.
            closer = _close_with_loop(client)
            await closer.__anext__()
            pair = self._clients[loop] = (client, closer)
        return pair[0]

    async def fetch(self, url: str, **kwargs):
        return await (await self.client()).fetch(url, **kwargs)

    def stream(self, url: str, **kwargs):
        return _LazyStream(self, url, kwargs)

    def fetch_sync(self, url: str, **kwargs):
        """Fetch on a private event loop; for sync tests."""
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("fetch_sync() called with an event loop running: `await client.fetch()` instead")
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self.fetch(url, **kwargs))

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for loop, (client, closer) in clients.items():
            if self._runner is not None and loop is self._runner.get_loop():
                self._runner.run(closer.aclose())
            elif not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(closer.aclose())
            # else: the loop's shutdown_asyncgens() already closed it (see client())
        if self._runner is not None:
            self._runner.close()
            self._runner = None


async def _close_with_loop(client):
    try:
        yield
    finally:
        await client.close()


class _LazyStream:
    """``async with restiming_client.stream(url)``: the loop's client is made on entry."""

    def __init__(self, owner: SyncAsyncClient, url: str, kwargs: dict) -> None:
        self._owner, self._url, self._kwargs = owner, url, kwargs
        self._context = None

    async def __aenter__(self):
        client = await self._owner.client()
        self._context = client.stream(self._url, **self._kwargs)
        return await self._context.__aenter__()

    async def __aexit__(self, *exc):
        return await self._context.__aexit__(*exc)


@pytest.fixture
def restiming_client(resource_timing):
    """A client on ``resource_timing``: ``fetch_sync(url)`` in sync tests, ``await
    fetch(url)`` in async ones."""
    client = SyncAsyncClient(resource_timing)
    yield client
    client.close()


def _percentile(sorted_values: list[float], q: float) -> float:
    # nearest rank, as HdrHistogram reports it (a value that was measured)
    rank = max(math.ceil(q / 100.0 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def summarize(entries) -> dict:
    """Per-phase p50/p90/p99/max in ms, connection and failure counts of ``entries``."""
    from restiming.phases import PHASES, phase_durations

    ok = [e for e in entries if not e.error]
    failed = [e for e in entries if e.error]
    by_phase: dict[str, list[float]] = {p: [] for p in (*PHASES, "total")}
    for e in ok:
        d = phase_durations(e)
        for phase, values in by_phase.items():
            if d[phase] is not None:
                values.append(d[phase])
    phases = {}
    for phase, values in by_phase.items():
        if not values:
            continue
        values.sort()
        stats = {name: round(_percentile(values, q), 6) for name, q in _PERCENTILES}
        stats["max"] = round(values[-1], 6)
        stats["count"] = len(values)
        phases[phase] = stats
    kinds: dict[str, int] = {}
    for e in failed:
        kinds[e.error] = kinds.get(e.error, 0) + 1
    return {
        "fetches": len(entries),
        "failures": len(failed),
        "failure_kinds": kinds,
        "new_connections": sum(1 for e in ok if not e.connection_reused),
        "reused_connections": sum(1 for e in ok if e.connection_reused),
        "phases_ms": phases,
    }


class FetchBenchmark:
    def __init__(self, request) -> None:
        self._request = request

    def __call__(self, url_or_urls, *, rounds: int = 20, warmup_rounds: int = 2, concurrency: int = 1,
                 allow_failures: bool = False, client_options: dict | None = None, **fetch_kwargs) -> dict:
        import asyncio

        import restiming

        try:
            benchmark = self._request.getfixturevalue("benchmark")
        except pytest.FixtureLookupError:
            pytest.fail("fetch_benchmark needs pytest-benchmark: pip install 'restiming[pytest]'")
        urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
        if not urls:
            raise ValueError("fetch_benchmark needs at least one URL")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("fetch_benchmark drives its own event loop: use it from a sync test")
        perf = restiming.Performance(buffer_size=max(250, len(urls) * 4))
        measured: list = []
        calls = [0]
        warmups = 0 if benchmark.disabled else warmup_rounds

        async def fetch_one(client, url):
            try:
                await client.fetch(url, **fetch_kwargs)
            except restiming.FetchError:
                pass  # its entry carries the error; counted below

        async def one_round(client):
            if concurrency == 1:
                for url in urls:
                    await fetch_one(client, url)
                return
            queue = iter(urls)

            async def worker():
                for url in queue:
                    await fetch_one(client, url)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(urls)))))

        with asyncio.Runner() as runner:
            client = restiming.Client(perf, **(client_options or {}))

            def target():
                runner.run(one_round(client))
                entries = perf.drain()
                calls[0] += 1
                if calls[0] > warmups:
                    measured.extend(entries)

            try:
                benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmups, iterations=1)
            finally:
                runner.run(client.close())
        summary = summarize(measured)
        benchmark.extra_info["restiming"] = summary
        if summary["failures"] and not allow_failures:
            first = next(e for e in measured if e.error)
            pytest.fail(f"{summary['failures']} of {summary['fetches']} fetches failed "
                        f"({summary['failure_kinds']}); first: {first.name}: {first.error_message}",
                        pytrace=False)
        return summary


@pytest.fixture
def fetch_benchmark(request):
    """``fetch_benchmark(url_or_urls, *, rounds=20, warmup_rounds=2, concurrency=1,
    allow_failures=False, client_options=None, **fetch_kwargs) -> summary dict``."""
    return FetchBenchmark(request)
