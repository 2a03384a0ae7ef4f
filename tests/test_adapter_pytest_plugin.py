"""The pytest plugin (``restiming_pytest``) through ``pytester``: sync and async
tests, the failing-test waterfall, and the pytest-benchmark integration
(``--benchmark-json`` with the extra_info percentiles, a failing fetch failing it)."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from tests.peers.scripted import Close, Send, Sleep, response

pytest_plugins = ["pytester"]


def _plugin_args() -> list[str]:
    # Once restiming is installed with its pytest11 entry point the plugin loads by
    # itself; before that (a source checkout) it is named explicitly.
    installed = any(ep.value == "restiming_pytest"
                    for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "restiming_pytest"]


def run(pytester, *args):
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", *args)


@pytest.fixture
def server(scripted_server):
    return scripted_server({
        "/ok": [Send(response(200, [("content-type", "text/plain")], b"fine"))],
        "/slow": [Sleep(0.02), Send(response(200, body=b"slow"))],
        "/broken": [Close()],
    })


def test_sync_and_async_tests_share_the_fixtures(pytester, server):
    pytester.makepyfile(f"""
        import pytest, restiming

        URL = {server.url('/ok')!r}

        def test_sync(restiming_client, resource_timing):
            r = restiming_client.fetch_sync(URL)
            assert r.status == 200 and r.body == b"fine"
            r = restiming_client.fetch_sync(URL)
            assert r.entry.connection_reused
            assert [e.name for e in resource_timing.get_entries()] == [URL, URL]

        @pytest.mark.asyncio
        async def test_pytest_asyncio(restiming_client, resource_timing):
            r = await restiming_client.fetch(URL)
            assert r.entry in resource_timing.get_entries()

        @pytest.mark.anyio
        async def test_anyio(restiming_client, resource_timing):
            async with restiming_client.stream(URL) as r:
                assert await r.aread() == b"fine"
            assert r.entry.response_status == 200

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
    """)
    result = run(pytester, "-W", "error::ResourceWarning", "-W", "error::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=3)


def test_a_failing_test_shows_the_waterfall(pytester, server):
    pytester.makepyfile(f"""
        import restiming

        def test_fails(restiming_client):
            restiming_client.fetch_sync({server.url('/ok')!r})
            restiming_client.fetch_sync({server.url('/slow')!r})
            try:
                restiming_client.fetch_sync({server.url('/broken')!r})
            except restiming.FetchError:
                pass
            assert False, "on purpose"

        def test_passes(restiming_client):
            restiming_client.fetch_sync({server.url('/ok')!r})
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("restiming waterfall") == 1
    result.stdout.fnmatch_lines([
        "*3 fetch(es) over*",
        "*|*200*/ok",
        "*|*200*/slow reused",
        "*wait=*",
        "*|*ERR reset*/broken*",
    ])


def test_benchmark_json_carries_percentiles(pytester, server, tmp_path):
    pytester.makepyfile(f"""
        def test_bench(fetch_benchmark):
            summary = fetch_benchmark([{server.url('/ok')!r}, {server.url('/slow')!r}],
                                      rounds=5, warmup_rounds=1, concurrency=2)
            assert summary["fetches"] == 10
    """)
    out = tmp_path / "bench.json"
    result = run(pytester, f"--benchmark-json={out}")
    result.assert_outcomes(passed=1)
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["stats"]["rounds"] == 5
    info = bench["extra_info"]["restiming"]
    assert info["fetches"] == 10 and info["failures"] == 0
    assert info["new_connections"] + info["reused_connections"] == 10
    assert info["reused_connections"] >= 8  # the warm-up round opened the connections
    for phase in ("wait", "total"):
        stats = info["phases_ms"][phase]
        assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
        assert stats["count"] == 10
    assert info["phases_ms"]["total"]["max"] >= 20  # /slow waits 20 ms


def test_a_failed_fetch_fails_the_benchmark(pytester, server, free_port):
    refused = f"http://127.0.0.1:{free_port()}/"
    pytester.makepyfile(f"""
        def test_fails(fetch_benchmark):
            fetch_benchmark([{server.url('/ok')!r}, {refused!r}], rounds=2, warmup_rounds=0)

        def test_allowed(fetch_benchmark):
            s = fetch_benchmark({refused!r}, rounds=2, warmup_rounds=0, allow_failures=True)
            assert s["failures"] == 2 and s["failure_kinds"] == {{"connect": 2}}
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*2 of 4 fetches failed*connect*"])


def test_waterfall_renders_opaque_and_reused_entries():
    import restiming
    from restiming_pytest import summarize, waterfall

    perf = restiming.Performance()
    rec = perf.begin("http://a.test/x")
    for phase in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
                  "request_start", "final_response_headers_start", "response_end"):
        rec.stamp(phase)
    ok = rec.finish(response_status=200)
    bad = perf.begin("http://a.test/y").finish(error="dns", error_message="no such host")
    text = waterfall([bad, ok])
    assert "2 fetch(es)" in text and "ERR dns" in text and "no such host" in text
    (bad_line,) = [line for line in text.splitlines() if "ERR dns" in line]
    assert "x" in bad_line.split("|")[1]
    summary = summarize([ok, bad])
    assert summary["failures"] == 1 and summary["new_connections"] == 1
    assert waterfall([]) == "(no fetches)"
