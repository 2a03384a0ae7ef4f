"""The command line, in-process (main(argv, stdout)) and as a subprocess."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from restiming.__main__ import main
from restiming._cli._demo import DemoServer
from restiming._cli._hist import Histogram
from restiming.phases import phase_durations
from tests.peers.scripted import Send, Sleep, response, timed_response


def run_cli(*argv):
    out = io.StringIO()
    code = main(list(argv), stdout=out)
    return code, out.getvalue()


@pytest.fixture
def site(scripted_server):
    def handler(req):
        if req.path == "/slow":
            return timed_response(200, [("Content-Type", "text/plain")], b"x" * 2000,
                                  head_delay=0.05, body_delay=0.05)
        if req.path == "/moved":
            return [Send(response(301, [("Location", "/st")]))]
        if req.path == "/st":
            return [Send(response(200, [("Content-Type", "application/json"),
                                        ("Server-Timing", 'db;dur=12.5;desc="query", cache;desc=hit')],
                                  b'{"ok": true}'))]
        if req.path == "/gz":
            return [Send(response(200, [("Content-Type", "text/html")], b"<p>hello</p>" * 500, gzip=True))]
        return [Send(response(200, [("Content-Type", "text/plain")], b"ok"))]

    return scripted_server(handler)


def test_waterfall_for_a_local_server(site):
    code, text = run_cli(site.url("/slow"))
    assert code == 0
    assert f"GET {site.url('/slow')}" in text
    assert "200 OK" in text and "http/1.1" in text and f"127.0.0.1:{site.port}" in text
    for label in ("queue", "DNS", "connect", "request", "wait", "receive", "total"):
        assert label in text
    wait_line = next(line for line in text.splitlines() if line.strip().startswith("wait"))
    assert float(wait_line.split()[1]) >= 45.0
    assert "█" in text
    assert "TLS" not in text  # plain HTTP: no TLS phase


def test_redirects_server_timing_and_sizes_shown(site):
    code, text = run_cli(site.url("/moved"), site.url("/gz"))
    assert code == 0
    assert "301 redirect from" in text
    assert "server-timing: db 12.5 ms (query), cache (hit)" in text
    assert "(gzip)" in text and "decoded 5.9 KiB" in text


def test_errors_exit_non_zero_with_the_phase(site, free_port):
    code, text = run_cli(site.url("/"), f"http://127.0.0.1:{free_port()}/")
    assert code == 1
    assert "error [connect] during TCP connect" in text
    code, text = run_cli("ftp://example.invalid/")
    assert code == 1 and "error [invalid]" in text
    code, text = run_cli("--timeout", "-1", site.url("/"))
    assert code == 2
    code, text = run_cli("-H", "bad header", site.url("/"))
    assert code == 2 and "Name: value" in text
    for method in ("GE T", "GET\r\nX: y", ""):  # a usage error, never a traceback (exit 70)
        code, text = run_cli("-X", method, site.url("/"))
        assert code == 2 and "-X/--method must be an HTTP method token" in text and "Traceback" not in text
    assert _bench(site.url("/"), "-X", "GE T")[0] == 2


def test_json_output(site):
    code, text = run_cli("--json", site.url("/st"), site.url("/moved"))
    assert code == 0
    data = json.loads(text)
    assert [d["name"] for d in data] == [site.url("/st"), site.url("/moved")]
    first = data[0]
    assert first["entryType"] == "resource" and first["responseStatus"] == 200
    assert first["serverTiming"][0] == {"name": "db", "duration": 12.5, "description": "query"}
    assert "connection_id" in first and "remote_address" in first and first["error"] is None
    assert data[1]["redirectStart"] > 0


def test_har_output(site, tmp_path, free_port):
    har = tmp_path / "out.har"
    code, _ = run_cli("--har", str(har), site.url("/slow"), site.url("/moved"), f"http://127.0.0.1:{free_port()}/")
    assert code == 1  # the refused one
    doc = json.loads(har.read_text())
    assert doc["log"]["version"] == "1.2"
    entries = doc["log"]["entries"]
    assert len(entries) == 3
    for e in entries:
        t = e["timings"]
        for key in ("send", "wait", "receive"):
            assert t[key] >= 0
        for key in ("blocked", "dns", "connect", "ssl"):
            assert t[key] == -1 or t[key] >= 0
        assert math.isclose(e["time"], sum(v for k, v in t.items() if k != "ssl" and k != "comment" and v >= 0),
                            abs_tol=1e-6)
    assert entries[0]["timings"]["wait"] >= 45
    assert entries[0]["timings"]["ssl"] == -1


def _percentile(values, p):
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _bench(*argv, **kw):
    return run_cli("bench", "--no-progress", *argv, **kw)


def test_bench_closed_loop_two_workers_accounts_for_every_request(tmp_path):
    out = tmp_path / "b.ndjson"
    summary = tmp_path / "s.json"
    csv_path = tmp_path / "b.csv"
    with DemoServer() as server:
        urls = [server.url("/api/items"), server.url("/page.html"), server.url("/nope"),
                "http://127.0.0.1:1/refused"]
        code, text = _bench(*urls, "-n", "600", "-c", "8", "--workers", "2", "--timeout", "5",
                            "--out", str(out), "--summary", str(summary), "--csv", str(csv_path))
    assert code == 0, text
    data = json.loads(summary.read_text())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert data["sent"] == 600
    assert data["completed"] + sum(data["errors"].values()) == data["sent"] == len(lines)
    assert data["errors"] == {"connect": 150}
    assert "requests: 600 sent" in text and "connect 150" in text
    assert len(csv_path.read_text().splitlines()) == 601
    # Histogram percentiles agree with exact ones computed from the NDJSON output,
    # within the histogram's precision (3 significant digits).
    ok = [line for line in lines if not line["error"]]
    for phase in ("wait", "total", "request"):
        exact_values = [int(phase_durations(line)[phase] * 1e6) for line in ok]
        for p in (50, 90, 99):
            exact = _percentile(exact_values, p) / 1e6
            got = data["phases"][phase][f"p{p}_ms"]
            assert abs(got - exact) <= max(exact * 2e-3, 0.0011), (phase, p, got, exact)


def test_bench_open_loop_corrects_for_a_slow_server(scripted_server, tmp_path):
    # A server that stalls: with 1 connection and a fixed schedule, requests queue
    # behind the slow ones; latency from the intended start exceeds the raw one.
    def handler(req):
        return [Sleep(0.03), Send(response(200, [], b"ok"))]

    server = scripted_server(handler)
    summary = tmp_path / "s.json"
    code, text = _bench(server.url("/"), "--rate", "60", "-z", "1.5", "-c", "1", "--workers", "2",
                        "--summary", str(summary))
    assert code == 0, text
    data = json.loads(summary.read_text())
    assert data["mode"] == "open" and data["workers"] == 1 and data["concurrency"] == 1
    assert data["completed"] + sum(data["errors"].values()) == data["sent"] == 90
    # Each request starts on schedule (start_time == its intended start, to the
    # dispatcher's lateness) and waits for the one connection inside its own entry:
    # the stall shows as queue time, and corrected >= total always.
    corrected, raw = data["phases"]["corrected"], data["phases"]["total"]
    assert corrected["mean_ms"] > raw["mean_ms"]
    assert corrected["p99_ms"] >= raw["p99_ms"] > 200
    assert corrected["max_ms"] >= raw["max_ms"]
    assert data["phases"]["queue"]["p99_ms"] > 150
    assert "late starts" in text and "total*" in text


def test_bench_in_process_worker_zero():
    with DemoServer() as server:
        code, text = _bench(server.url("/api/items"), "-n", "50", "-c", "4", "--workers", "0")
    assert code == 0 and "50 sent, 50 completed" in text


def test_bench_bad_arguments():
    assert _bench("http://127.0.0.1:1/", "-c", "0")[0] == 2
    assert _bench("not a url")[0] == 2
    assert _bench("http://127.0.0.1:1/", "--rate", "-5")[0] == 2


def test_histogram_memory_is_fixed():
    h = Histogram()
    before = h.memory_bytes()
    for v in range(0, 10_000_000, 7):
        h.record(v * 1000)
    assert h.memory_bytes() == before


def _cli_env():
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def test_subprocess_fetch(site):
    proc = subprocess.run([sys.executable, "-m", "restiming", site.url("/st")], capture_output=True, text=True,
                          timeout=60, env=_cli_env())
    assert proc.returncode == 0, proc.stderr
    assert "server-timing" in proc.stdout


def test_sigint_still_writes_the_summary(tmp_path):
    summary = tmp_path / "s.json"
    with DemoServer() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "restiming", "bench", server.url("/api/items"), "-z", "30", "-c", "4",
             "--workers", "2", "--summary", str(summary)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env())
        try:
            time.sleep(4.0)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, stderr
    assert "[interrupted]" in stdout
    data = json.loads(summary.read_text())
    assert data["interrupted"] is True
    assert data["completed"] > 0
    assert data["completed"] + sum(data["errors"].values()) == data["sent"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal():
    with DemoServer() as server:
        tty = _Terminal()
        assert main(["bench", server.url("/api/items"), "-n", "200", "-c", "4", "--workers", "0"], stdout=tty) == 0
        plain = io.StringIO()
        assert main(["bench", server.url("/api/items"), "-n", "50", "-c", "4", "--workers", "0"], stdout=plain) == 0
    assert "\r" in tty.getvalue() and "req/s" in tty.getvalue().split("restiming bench")[0]
    assert "\r" not in plain.getvalue()
